package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// catalogTrack is what the scenarios need of a track in the api's public
// listing.
type catalogTrack struct {
	ID        string  `json:"id"`
	ObjectKey *string `json:"object_key"`
	SizeBytes *int64  `json:"size_bytes"`
	HLSPrefix *string `json:"hls_prefix"`
	HLSStatus string  `json:"hls_status"`
}

// publicTracks lists the whole public catalogue, following the api's
// cursor from page to page.
func publicTracks(ctx context.Context, api string) ([]catalogTrack, error) {
	var tracks []catalogTrack
	for cursor := ""; ; {
		u := api + "/v1/tracks?limit=200&cursor=" + url.QueryEscape(cursor)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items      []catalogTrack `json:"items"`
			NextCursor *string        `json:"next_cursor"`
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", u, err)
		}
		tracks = append(tracks, page.Items...)
		if page.NextCursor == nil {
			return tracks, nil
		}
		cursor = *page.NextCursor
	}
}
