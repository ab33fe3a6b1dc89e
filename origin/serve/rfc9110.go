package serve

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// byteRange is a satisfiable range of a representation.
type byteRange struct {
	start, length int64
}

// maxRanges bounds the ranges considered in one header: more is a
// resource-exhaustion attempt, not a player, so the header is ignored.
const maxRanges = 16

var errUnsatisfiable = errors.New("range not satisfiable")

// parseRange reads a Range header (RFC 9110 §14.1.2) for a representation
// of size bytes. It returns:
//   - nil, nil when the header must be ignored and the whole
//     representation sent: absent, another unit, invalid syntax (§14.2),
//     an empty representation, or more than maxRanges ranges;
//   - errUnsatisfiable when no range overlaps the representation (416);
//   - otherwise the satisfiable ranges, clipped to the representation,
//     in the order asked.
func parseRange(h string, size int64) ([]byteRange, error) {
	specs, ok := parseRangeSpecs(h)
	if !ok || size == 0 {
		return nil, nil
	}
	var out []byteRange
	for _, r := range specs {
		if r.first < 0 { // suffix-range: the last N bytes
			if r.last == 0 {
				continue // unsatisfiable
			}
			n := min(r.last, size)
			out = append(out, byteRange{start: size - n, length: n})
			continue
		}
		if r.first >= size {
			continue // unsatisfiable
		}
		end := size - 1
		if r.last >= 0 {
			end = min(r.last, size-1)
		}
		out = append(out, byteRange{start: r.first, length: end - r.first + 1})
	}
	if len(out) == 0 {
		return nil, errUnsatisfiable
	}
	return out, nil
}

// rangeSpec is one byte-range-spec as written: first-last, first- (last
// -1), or a suffix of last bytes (first -1).
type rangeSpec struct {
	first, last int64
}

// parseRangeSpecs reads the syntax of a Range header, without the size
// of the representation. ok is false when the header must be ignored:
// absent, another unit, invalid syntax, no range at all, or more than
// maxRanges.
func parseRangeSpecs(h string) (specs []rangeSpec, ok bool) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return nil, false
	}
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.Trim(part, " \t")
		if part == "" {
			continue // RFC 9110 §5.6.1: empty list elements are ignored
		}
		if len(specs) == maxRanges {
			return nil, false
		}
		first, last, ok := strings.Cut(part, "-")
		if !ok {
			return nil, false
		}
		if first == "" {
			n, ok := parseDigits(last)
			if !ok {
				return nil, false
			}
			specs = append(specs, rangeSpec{first: -1, last: n})
			continue
		}
		start, ok := parseDigits(first)
		if !ok {
			return nil, false
		}
		end := int64(-1)
		if last != "" {
			if end, ok = parseDigits(last); !ok || end < start {
				return nil, false // invalid: the whole header is ignored
			}
		}
		specs = append(specs, rangeSpec{first: start, last: end})
	}
	return specs, len(specs) > 0
}

// singleRange reads a Range header that asks for one range from a known
// offset: first-last, or first- (last -1). A storage backend can serve
// it without knowing the size first. ok is false for anything else.
func singleRange(h string) (r rangeSpec, ok bool) {
	specs, ok := parseRangeSpecs(h)
	if !ok || len(specs) != 1 || specs[0].first < 0 {
		return rangeSpec{}, false
	}
	return specs[0], true
}

// parseDigits parses 1*DIGIT without signs or overflow.
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// coalesce merges overlapping and adjacent ranges (RFC 9110 §14.2 allows
// a server to) and returns them in order.
func coalesce(rs []byteRange) []byteRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b byteRange) int { return int(a.start - b.start) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.start <= last.start+last.length {
			last.length = max(last.start+last.length, r.start+r.length) - last.start
			continue
		}
		out = append(out, r)
	}
	return out
}

// etagMatches compares an If-Match / If-None-Match list with etag
// (quoted). strong selects strong comparison (RFC 9110 §8.8.3.2).
func etagMatches(list, etag string, strong bool) bool {
	list = strings.TrimSpace(list)
	if list == "*" {
		return true
	}
	for tag := range strings.SplitSeq(list, ",") {
		tag = strings.TrimSpace(tag)
		weak := strings.HasPrefix(tag, "W/")
		if weak {
			if strong {
				continue
			}
			tag = tag[2:]
		}
		if tag == etag {
			return true
		}
	}
	return false
}

// precondition is the outcome of evaluating conditional headers.
type precondition int

const (
	proceed     precondition = iota
	notModified              // 304
	failed                   // 412
	ignoreRange              // If-Range did not match: send all
)

// conditionalHeaders are the request headers RFC 9110 §13 evaluates.
type conditionalHeaders struct {
	ifMatch, ifNoneMatch, ifModifiedSince, ifUnmodifiedSince, ifRange string
	hasRange                                                          bool
}

// present reports whether the request carries a validator, to be
// compared before anything is sent.
func (c conditionalHeaders) present() bool {
	return c.ifMatch != "" || c.ifNoneMatch != "" || c.ifModifiedSince != "" || c.ifUnmodifiedSince != "" || c.ifRange != ""
}

// evaluate applies RFC 9110 §13.2.2's order to a GET or HEAD of a
// representation with etag (quoted) and modification time mod.
func (c conditionalHeaders) evaluate(etag string, mod time.Time) precondition {
	switch {
	case c.ifMatch != "":
		if !etagMatches(c.ifMatch, etag, true) {
			return failed
		}
	case c.ifUnmodifiedSince != "":
		if t, err := parseHTTPDate(c.ifUnmodifiedSince); err == nil && mod.Truncate(time.Second).After(t) {
			return failed
		}
	}
	switch {
	case c.ifNoneMatch != "":
		if etagMatches(c.ifNoneMatch, etag, false) {
			return notModified
		}
	case c.ifModifiedSince != "":
		if t, err := parseHTTPDate(c.ifModifiedSince); err == nil && !mod.Truncate(time.Second).After(t) {
			return notModified
		}
	}
	if c.hasRange && c.ifRange != "" {
		// §13.1.5: an entity tag must match strongly; a date must equal
		// the Last-Modified exactly.
		if strings.HasPrefix(c.ifRange, `"`) || strings.HasPrefix(c.ifRange, "W/") {
			if !etagMatches(c.ifRange, etag, true) {
				return ignoreRange
			}
		} else if t, err := parseHTTPDate(c.ifRange); err != nil || !t.Equal(mod.Truncate(time.Second)) {
			return ignoreRange
		}
	}
	return proceed
}

// parseHTTPDate parses the IMF-fixdate and the two obsolete formats
// (RFC 9110 §5.6.7).
func parseHTTPDate(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123, time.RFC850, time.ANSIC} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not an HTTP date")
}

// appendHTTPDate appends t as an IMF-fixdate (RFC 9110 §5.6.7), exactly
// as t.UTC().AppendFormat(b, http.TimeFormat) would (FuzzAppendHTTPDate),
// in a third of the time (BenchmarkAppendHTTPDate): every answer carries
// a Last-Modified.
func appendHTTPDate(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, http.TimeFormat)
	}
	hour, minute, second := t.Clock()
	b = append(b, weekdayNames[t.Weekday()]...)
	b = append(b, ", "...)
	b = append2(b, day)
	b = append(b, ' ')
	b = append(b, monthNames[month-1]...)
	b = append(b, ' ')
	b = append4(b, year)
	b = append(b, ' ')
	b = append2(b, hour)
	b = append(b, ':')
	b = append2(b, minute)
	b = append(b, ':')
	b = append2(b, second)
	return append(b, " GMT"...)
}

var (
	weekdayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	monthNames   = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// append2 and append4 append n ≥ 0 in 2 and 4 digits, leading zeros
// included.
func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10%10), byte('0'+n%10)) }

func append4(b []byte, n int) []byte { return append2(append2(b, n/100), n%100) }
