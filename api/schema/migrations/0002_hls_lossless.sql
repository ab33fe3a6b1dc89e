-- Whether the package at hls_prefix has the lossless tier (HLS_RENDITIONS
-- with flac, from a lossless upload): its lossless.m3u8 offers FLAC
-- beside the AAC variants of master.m3u8, for listeners who opt in.
ALTER TABLE tracks ADD COLUMN hls_lossless boolean NOT NULL DEFAULT false;
