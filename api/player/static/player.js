// The player page: lists public tracks from the catalog API and plays
// them through the signer. HLS (hls.js, or the browser's own) first; the
// original file (/stream) when the track has no HLS package yet or HLS
// fails. The signer's URL comes from the page's config.
(async function () {
  const config = await (await fetch('/player/config.json')).json();
  const audio = document.getElementById('audio');
  const now = document.getElementById('now');
  const list = document.getElementById('tracks');
  const lossless = document.getElementById('lossless');
  let hls = null;
  let current = null;

  function stop() {
    if (hls) { hls.destroy(); hls = null; }
    audio.removeAttribute('src');
    audio.load();
  }

  function playStream(track) {
    stop();
    audio.src = config.signer + '/v1/tracks/' + track.id + '/stream';
    audio.dataset.mode = 'stream';
    return audio.play();
  }

  // What the listener hears: the lossless tier, or AAC at its bit rate.
  function quality(level) {
    if (/^flac$/i.test(level.audioCodec || '')) { return 'lossless (FLAC)'; }
    return 'AAC ' + Math.round((level.averageBitrate || level.bitrate) / 1000) + ' kbit/s';
  }

  // at: where to start, in seconds (a change of quality mid-track).
  function play(track, at) {
    current = track;
    const playing = 'Playing ' + track.title + ' by ' + track.artist;
    now.textContent = playing;
    delete audio.dataset.codec;
    // The lossless tier is opt-in: the signer's default master has none.
    const query = lossless.checked && track.hls_lossless ? '?quality=lossless' : '';
    const hlsURL = config.signer + '/v1/tracks/' + track.id + '/hls' + query;
    if (track.hls_status !== 'ready') {
      return playStream(track);
    }
    stop();
    audio.dataset.mode = 'hls';
    if (window.Hls && Hls.isSupported()) {
      hls = new Hls({ startPosition: at || -1 });
      hls.on(Hls.Events.ERROR, function (_, data) {
        if (data.fatal) { playStream(track); }
      });
      // Fired when the variant playing changes, and for the first one.
      hls.on(Hls.Events.LEVEL_SWITCHED, function (_, data) {
        const level = hls.levels[data.level];
        now.textContent = playing + ' · ' + quality(level);
        audio.dataset.codec = level.audioCodec || '';
      });
      hls.loadSource(hlsURL);
      hls.attachMedia(audio);
      return new Promise(function (resolve) {
        hls.on(Hls.Events.MANIFEST_PARSED, function () { resolve(audio.play()); });
      });
    }
    if (audio.canPlayType('application/vnd.apple.mpegurl')) {
      audio.src = hlsURL; // Safari plays HLS itself
      return audio.play();
    }
    return playStream(track);
  }

  const res = await fetch('/v1/tracks?limit=200');
  const page = await res.json();
  list.textContent = '';
  if (!page.items.length) {
    list.innerHTML = '<li>No public tracks yet.</li>';
  }
  if (page.items.some(function (t) { return t.hls_lossless; })) {
    document.getElementById('lossless-choice').hidden = false;
  }
  lossless.addEventListener('change', function () {
    if (current && current.hls_lossless && audio.dataset.mode === 'hls' && !audio.paused) {
      play(current, audio.currentTime);
    }
  });
  for (const track of page.items) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.textContent = '▶ ' + track.title + ' — ' + track.artist;
    button.dataset.track = track.id;
    button.addEventListener('click', function () { play(track); });
    li.appendChild(button);
    list.appendChild(li);
  }
  window.playgate = { play: play, audio: audio };
})();
