-- The catalog: tracks, share links and licences (SPEC §2).

CREATE TABLE tracks (
    id              uuid PRIMARY KEY,
    owner_id        text NOT NULL CHECK (owner_id <> ''),
    title           text NOT NULL,
    artist          text NOT NULL,
    duration_ms     bigint CHECK (duration_ms >= 0),
    visibility      text NOT NULL CHECK (visibility IN ('public', 'unlisted', 'private')),
    price_cents     bigint NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
    storage_backend text CHECK (storage_backend IN ('local', 's3')),
    object_key      text,
    content_type    text,
    size_bytes      bigint CHECK (size_bytes >= 0),
    sha256          text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    hls_status      text NOT NULL DEFAULT 'none'
                    CHECK (hls_status IN ('none', 'queued', 'processing', 'ready', 'failed')),
    hls_prefix      text,
    hls_error       text,
    hls_progress    smallint NOT NULL DEFAULT 0 CHECK (hls_progress BETWEEN 0 AND 100),
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    -- Audio is all or nothing: a row never points at half-described bytes.
    CONSTRAINT tracks_audio_complete CHECK (
        (object_key IS NULL AND storage_backend IS NULL AND sha256 IS NULL AND size_bytes IS NULL)
        OR (object_key IS NOT NULL AND storage_backend IS NOT NULL AND sha256 IS NOT NULL
            AND size_bytes IS NOT NULL AND content_type IS NOT NULL)),
    CONSTRAINT tracks_hls_ready CHECK (hls_status <> 'ready' OR hls_prefix IS NOT NULL)
);

-- Keyset pagination: the owner's tracks and the public catalogue, newest
-- first (UUIDv7 ids sort by creation time).
CREATE INDEX tracks_owner_page ON tracks (owner_id, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tracks_public_page ON tracks (id DESC) WHERE deleted_at IS NULL AND visibility = 'public';

CREATE TABLE share_links (
    id         uuid PRIMARY KEY,
    track_id   uuid NOT NULL REFERENCES tracks (id),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX share_links_track ON share_links (track_id);

CREATE TABLE licenses (
    user_id    text NOT NULL CHECK (user_id <> ''),
    track_id   uuid NOT NULL REFERENCES tracks (id),
    granted_at timestamptz NOT NULL DEFAULT now(),
    source     text NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX licenses_track ON licenses (track_id);

-- Every change bumps the version the API uses for If-Match.
CREATE FUNCTION playgate_track_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER tracks_version BEFORE UPDATE ON tracks
    FOR EACH ROW EXECUTE FUNCTION playgate_track_version();

-- Every change to a track, share link or licence tells every signer
-- replica which track to drop from its cache. A trigger sends it inside the
-- writing transaction, so no code path can forget it and it is delivered
-- only if the change commits. The argument names the column holding the
-- track id.
CREATE FUNCTION playgate_notify_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('playgate_tracks',
        coalesce(to_jsonb(NEW), to_jsonb(OLD)) ->> TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE TRIGGER tracks_notify AFTER INSERT OR UPDATE OR DELETE ON tracks
    FOR EACH ROW EXECUTE FUNCTION playgate_notify_track('id');
CREATE TRIGGER share_links_notify AFTER INSERT OR UPDATE OR DELETE ON share_links
    FOR EACH ROW EXECUTE FUNCTION playgate_notify_track('track_id');
CREATE TRIGGER licenses_notify AFTER INSERT OR UPDATE OR DELETE ON licenses
    FOR EACH ROW EXECUTE FUNCTION playgate_notify_track('track_id');
