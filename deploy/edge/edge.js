// playgate's edge: Bunny token authentication (V2, HMAC-SHA256) verified
// in nginx with njs, exactly as signer/token verifies it (SPEC §4.4, §10).
// upstream() returns the object's URI for the origin (the token stripped,
// path form mapped back to the object path), or "" to refuse.
const crypto = require('crypto');

const KNOWN = ['limit', 'token_countries', 'token_countries_blocked', 'token_ignore_params', 'token_path'];

function parse(uri) {
    var q = uri.indexOf('?');
    var path = q < 0 ? uri : uri.substring(0, q);
    var query = q < 0 ? '' : uri.substring(q + 1);
    var carrier = query;
    if (path.startsWith('/bcdn_token=')) {
        var rest = path.substring('/bcdn_token='.length);
        var slash = rest.indexOf('/');
        if (slash < 0) {
            return null;
        }
        carrier = 'token=' + rest.substring(0, slash) + (query ? '&' + query : '');
        path = rest.substring(slash);
    }
    if (path === '' || path[0] !== '/') {
        return null;
    }
    var p = {path: path, token: '', expires: -1, tokenPath: '', download: '', params: [], ignore: false};
    var parts = carrier.split('&');
    for (var i = 0; i < parts.length; i++) {
        if (parts[i] === '') {
            continue;
        }
        var eq = parts[i].indexOf('=');
        var k = eq < 0 ? parts[i] : parts[i].substring(0, eq);
        var v;
        try {
            v = decodeURIComponent((eq < 0 ? '' : parts[i].substring(eq + 1)).replace(/\+/g, ' '));
        } catch (e) {
            return null;
        }
        if (k === 'token') {
            if (p.token !== '') {
                return null;
            }
            p.token = v;
            continue;
        }
        if (k === 'expires') {
            if (p.expires >= 0 || !/^[0-9]{1,18}$/.test(v)) {
                return null;
            }
            p.expires = Number(v);
            continue;
        }
        if (k === 'token_path') {
            p.tokenPath = v;
        } else if (k === 'token_ignore_params') {
            p.ignore = v === 'true';
        } else if (k === 'download') {
            p.download = v;
        }
        p.params.push([k, v]);
    }
    if (p.token === '' || p.expires < 0) {
        return null;
    }
    if (p.ignore) {
        p.params = p.params.filter(function (kv) { return KNOWN.indexOf(kv[0]) >= 0; });
    }
    return p;
}

// The HMAC covers the raw client address: IPv4's 4 bytes, or IPv6's /64
// and 8 zero bytes.
function ipBytes(addr) {
    if (addr.indexOf(':') < 0) {
        var o = addr.split('.').map(Number);
        return Buffer.from(o);
    }
    if (addr.startsWith('::ffff:') && addr.indexOf('.') > 0) {
        return ipBytes(addr.substring(7));
    }
    var halves = addr.split('::');
    var head = halves[0] ? halves[0].split(':') : [];
    var tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
    var groups = head.concat(new Array(8 - head.length - tail.length).fill('0'), tail);
    var b = Buffer.alloc(16);
    for (var i = 0; i < 8; i++) {
        var g = parseInt(groups[i], 16);
        b[2 * i] = g >> 8;
        b[2 * i + 1] = g & 0xff;
    }
    return Buffer.concat([b.slice(0, 8), Buffer.alloc(8)]);
}

function within(path, tokenPath) {
    if (!path.startsWith(tokenPath)) {
        return false;
    }
    return path.length === tokenPath.length || tokenPath[tokenPath.length - 1] === '/' || path[tokenPath.length] === '/';
}

function equal(a, b) {
    if (a.length !== b.length) {
        return false;
    }
    var d = 0;
    for (var i = 0; i < a.length; i++) {
        d |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return d === 0;
}

function upstream(r) {
    var p = parse(r.variables.request_uri);
    if (p === null || Math.floor(Date.now() / 1000) > p.expires) {
        return '';
    }
    if (p.tokenPath !== '' && !within(p.path, p.tokenPath)) {
        return '';
    }
    // "HS256-" + 43 characters, or "HS256-1-" + 43 when IP-bound: the
    // length decides, since a digest may itself begin with "1-".
    if (!p.token.startsWith('HS256-')) {
        return '';
    }
    var digest = p.token.substring(6);
    var ip = Buffer.alloc(0);
    if (digest.length === 45 && digest.startsWith('1-')) {
        ip = ipBytes(r.remoteAddress);
    } else if (digest.length !== 43) {
        return '';
    }
    var data = p.params.map(function (kv) { return kv[0] + '=' + kv[1]; }).sort().join('&');
    var signed = Buffer.concat([Buffer.from((p.tokenPath || p.path) + String(p.expires)), ip, Buffer.from(data)]);
    var keys = r.variables.edge_keys.split(' ');
    for (var i = 0; i < keys.length; i++) {
        if (keys[i] === '') {
            continue;
        }
        var mac = crypto.createHmac('sha256', keys[i]).update(signed).digest('base64url');
        if (equal(ip.length ? '1-' + mac : mac, digest)) {
            r.variables.edge_download = p.download;
            return p.path;
        }
    }
    return '';
}

// disposition is the attachment header of a verified download URL; the
// cache holds one copy per object path, whatever the disposition.
function disposition(r) {
    var name = r.variables.edge_upstream === '' ? '' : r.variables.edge_download;
    if (!name) {
        return '';
    }
    return 'attachment; filename="' + name.replace(/["\\\r\n]/g, '_') + '"; filename*=UTF-8\'\'' + encodeURIComponent(name);
}

// purge removes one object from the cache: its file is named after the
// MD5 of the cache key (the object path) in the levels=1:2 layout. nginx
// treats a vanished file as a miss.
function purge(r) {
    var key = r.uri.substring('/purge'.length);
    if (!/^\/(tracks|hls)\/[^\x00]+$/.test(key) || key.indexOf('..') >= 0) {
        r.return(400);
        return;
    }
    var h = crypto.createHash('md5').update(key).digest('hex');
    var file = r.variables.edge_cache_dir + '/' + h.substring(31) + '/' + h.substring(29, 31) + '/' + h;
    try {
        require('fs').unlinkSync(file);
        r.return(200, 'purged ' + key + '\n');
    } catch (e) {
        r.return(404, 'not cached ' + key + '\n');
    }
}

export default {upstream, disposition, purge};
