// The watch page: get a QR, hear the payment over the WebSocket, play, and hand back
// to the pay panel when access ends. All text comes from the server (config.strings).
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("watch-config").textContent);
  const t = config.strings;
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const payPanel = $("pay-panel");
  const playerPanel = $("player-panel");
  const devicePanel = $("device-panel");
  const watchHereButton = $("watch-here");
  const statusLine = $("status");
  const qrImage = $("qr-image");
  const qrLoading = $("qr-loading");
  const newQrButton = $("new-qr");
  const simulateButton = $("simulate");
  const unmuteButton = $("unmute");
  const payCountdown = $("pay-countdown");
  const accessCountdown = $("access-countdown");
  const payAnnouncer = $("pay-announcer");
  const accessAnnouncer = $("access-announcer");

  const state = {
    mode: "pay", // "pay" | "play" | "device" (paid, but playing on other devices)
    session: null, // the pending QR: {sessionId, trxId, qrCode, ...}
    watchedSessionId: null,
    payDeadline: null, // performance.now() based, immune to a wrong device clock
    accessDeadline: null,
    socket: null,
    reconnectAttempt: 0,
    reconnectTimer: null,
    hls: null,
  };

  const format = (template, values) =>
    template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));

  function setStatus(text) {
    statusLine.textContent = text;
  }

  async function api(method, url, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    try {
      const response = await fetch(url, options);
      const payload = await response.json().catch(() => ({}));
      return { ok: response.ok, status: response.status, payload };
    } catch (error) {
      return { ok: false, status: 0, payload: {} };
    }
  }

  // ---- Paying -------------------------------------------------------------------

  async function requestQr() {
    showPayPanel();
    newQrButton.hidden = true;
    qrImage.hidden = true;
    qrLoading.hidden = false;
    qrLoading.textContent = t.qr_loading;
    if (simulateButton) simulateButton.disabled = true;
    const answer = await api("POST", config.urls.generateQris, { streamId: config.streamId });
    if (answer.status === 409) {
      return startPlayback(); // paid already, e.g. in another tab
    }
    if (!answer.ok) {
      setStatus(answer.payload.error || t.status_error);
      qrLoading.hidden = true;
      newQrButton.hidden = false;
      return;
    }
    const session = answer.payload.data;
    state.session = session;
    qrImage.onload = () => {  // reveal it drawn, never as an empty box
      qrImage.hidden = false;
      qrLoading.hidden = true;
    };
    qrImage.onerror = () => setStatus(t.status_error);
    qrImage.src = session.qrCode;
    state.payDeadline = performance.now() + session.remainingTime;
    renderCountdowns();
    setStatus(t.status_waiting);
    if (simulateButton) simulateButton.disabled = false;
    listen(session.sessionId);
  }

  async function simulatePayment() {
    if (!state.session) return;
    simulateButton.disabled = true;
    const url = config.urls.simulatorPay.replace("TRX_ID", encodeURIComponent(state.session.trxId));
    const answer = await api("POST", url);
    if (!answer.ok) {
      setStatus(answer.payload.error || t.status_error);
      simulateButton.disabled = false;
    }
    // The page changes when the WebSocket says "paid", as it would for a real payment.
  }

  function showPayPanel() {
    state.mode = "pay";
    playerPanel.hidden = true;
    devicePanel.hidden = true;
    payPanel.hidden = false;
  }

  function qrExpired() {
    state.payDeadline = null;
    renderCountdowns();
    state.session = null;
    qrImage.hidden = true;
    qrLoading.hidden = true;
    if (simulateButton) simulateButton.disabled = true;
    setStatus(t.status_qr_expired);
    newQrButton.hidden = false;
  }

  // ---- Live status ---------------------------------------------------------------

  function listen(sessionId) {
    if (state.watchedSessionId === sessionId && state.socket) return;
    closeSocket();
    state.watchedSessionId = sessionId;
    state.reconnectAttempt = 0;
    connect();
  }

  function closeSocket() {
    clearTimeout(state.reconnectTimer);
    if (state.socket) {
      state.socket.onclose = null;
      state.socket.close(1000);
      state.socket = null;
    }
  }

  function connect() {
    const sessionId = state.watchedSessionId;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(
      `${scheme}://${location.host}${config.urls.ws}?sessionId=${encodeURIComponent(sessionId)}`);
    state.socket = socket;
    socket.onopen = () => { state.reconnectAttempt = 0; };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "status" && message.sessionId === state.watchedSessionId) {
        onStatus(message);
      }
    };
    socket.onclose = (event) => {
      state.socket = null;
      if (event.code === 4403 || event.code === 4404 || sessionId !== state.watchedSessionId) {
        return; // not ours, or not ours any more: nothing to reconnect to
      }
      if (state.mode === "pay") setStatus(t.status_reconnecting);
      // Exponential backoff with jitter; every reconnection starts with a snapshot.
      const delay = Math.min(10000, 500 * 2 ** state.reconnectAttempt) * (0.5 + Math.random() / 2);
      state.reconnectAttempt += 1;
      state.reconnectTimer = setTimeout(connect, delay);
    };
  }

  function onStatus(message) {
    if (message.status === "pending") {
      state.payDeadline = performance.now() + message.remainingTime;
      renderCountdowns();
      if (state.mode === "pay") setStatus(t.status_waiting);
    } else if (message.status === "paid") {
      state.accessDeadline = performance.now() + message.remainingTime;
      renderCountdowns();
      if (state.mode === "pay") {
        setStatus(t.status_paid);
        startPlayback();
      }
    } else if (message.status === "expired") {
      if (state.mode !== "pay") {
        endPlayback();
      } else {
        afterQrExpired();
      }
    }
  }

  async function afterQrExpired() {
    // A QR can end because an older one was paid late: then there is access to play.
    const access = await checkAccess();
    if (access && access.hasAccess) return play(access);
    qrExpired();
  }

  // ---- Watching ------------------------------------------------------------------

  // The access answer, {deviceLimit: true} when the purchase plays on as many devices
  // as it may, or null when there is no verdict (the network blinked).
  function accessAnswer(answer) {
    if (answer.status === 403 && answer.payload.code === "device_limit") {
      return { deviceLimit: true };
    }
    return answer.ok ? answer.payload.data : null;
  }

  async function checkAccess() {
    const url = `${config.urls.checkAccess}?streamId=${encodeURIComponent(config.streamId)}`;
    // Also renews the stream's access cookie, with this device's grant.
    return accessAnswer(await api("GET", url));
  }

  async function watchHere() {
    watchHereButton.disabled = true;
    const access = accessAnswer(
      await api("POST", config.urls.watchHere, { streamId: config.streamId }));
    watchHereButton.disabled = false;
    if (access && access.hasAccess) return play(access);
    if (access && !access.deviceLimit) return endPlayback();
  }

  // Another device plays this purchase: say so, and offer to move playback here.
  function showDevicePanel() {
    detach();
    state.mode = "device";
    payPanel.hidden = true;
    playerPanel.hidden = true;
    devicePanel.hidden = false;
    watchHereButton.focus();
  }

  async function startPlayback() {
    const access = await checkAccess();
    if (access && access.deviceLimit) return showDevicePanel();
    if (!access || !access.hasAccess) {
      setStatus(t.status_error);
      newQrButton.hidden = false;
      return;
    }
    play(access);
  }

  function play(access) {
    state.mode = "play";
    state.session = null;
    state.payDeadline = null;
    state.accessDeadline = performance.now() + access.remainingTime;
    renderCountdowns();
    listen(access.sessionId);
    if (access.deviceLimit) return showDevicePanel();
    payPanel.hidden = true;
    devicePanel.hidden = true;
    playerPanel.hidden = false;
    attach(access.playbackUrl);
  }

  function attach(url) {
    detach();
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url; // Safari, recent Chromium: the browser plays HLS itself
    } else if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ lowLatencyMode: true });
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (data.response && data.response.code === 403) {
          // The gate said no: show why (pay panel, or another device), not a frozen frame.
          accessLost({ refused: true });
        } else if (data.fatal && data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
          hls.startLoad();
        } else if (data.fatal && data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      state.hls = hls;
    } else {
      setStatus(t.no_hls);
      return;
    }
    video.play().catch(() => {
      // Autoplay with sound needs a gesture the viewer may not have made (they paid on
      // their phone): start muted, offer the sound.
      video.muted = true;
      unmuteButton.hidden = false;
      video.play().catch(() => {});
    });
  }

  function detach() {
    if (state.hls) {
      state.hls.destroy();
      state.hls = null;
    }
    video.pause();
    video.removeAttribute("src");
    video.load();
  }

  async function accessLost({ refused = false } = {}) {
    const access = await checkAccess();
    // Only the server saying "no access" ends playback: a failed check (the network
    // blinked) is no verdict, and the next stall asks again.
    if (access === null) return;
    if (access.deviceLimit) return showDevicePanel();
    if (access.hasAccess) {
      // Refused, yet access holds: this device's grant was ended and check-access has
      // just given it a new one (in the cookie). Start again with it, after a pause: a
      // gate that refused a moment ago may take a few seconds to hear of the free place.
      if (refused) setTimeout(() => { if (state.mode === "play") attach(access.playbackUrl); }, 2000);
      return;
    }
    endPlayback();
  }

  function endPlayback() {
    if (state.mode === "pay") return;
    detach();
    state.accessDeadline = null;
    renderCountdowns();
    showPayPanel();
    qrImage.hidden = true;
    qrLoading.hidden = true;
    if (simulateButton) simulateButton.disabled = true;
    setStatus(t.status_access_ended);
    newQrButton.hidden = false;
    newQrButton.focus();
  }

  // Native HLS does not say why it stopped: a refused playlist or segment shows up as a
  // stall (Chromium) or an error (Safari). Either way, ask whether access has ended.
  let probeTimer = null;
  function probeAccessSoon() {
    if (state.mode !== "play" || probeTimer !== null) return;
    probeTimer = setTimeout(() => {
      probeTimer = null;
      if (state.mode === "play") accessLost();
    }, 1000);
  }
  for (const event of ["error", "stalled", "waiting"]) {
    video.addEventListener(event, probeAccessSoon);
  }

  // ---- Countdowns ----------------------------------------------------------------

  const lastAnnounced = { pay: null, access: null };

  function clock(ms, withHours) {
    const total = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return withHours || h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function announce(kind, element, label, remainingMs) {
    // Screen readers hear the time once a minute, not every second.
    const minutes = Math.ceil(remainingMs / 60000);
    if (minutes !== lastAnnounced[kind]) {
      lastAnnounced[kind] = minutes;
      element.textContent = format(t.minutes_left, { label, minutes });
    }
  }

  // Also run at once whenever a deadline changes, so no "--:--" flashes in between.
  function renderCountdowns() {
    const now = performance.now();
    if (state.payDeadline !== null) {
      const left = state.payDeadline - now;
      payCountdown.textContent = clock(left, false);
      announce("pay", payAnnouncer, t.pay_time_left, left);
    } else {
      payCountdown.textContent = "--:--";
    }
    if (state.accessDeadline !== null) {
      const left = state.accessDeadline - now;
      accessCountdown.textContent = clock(left, true);
      announce("access", accessAnnouncer, t.access_left, left);
    }
  }
  setInterval(renderCountdowns, 250);

  // ---- Start ---------------------------------------------------------------------

  newQrButton.addEventListener("click", requestQr);
  if (simulateButton) simulateButton.addEventListener("click", simulatePayment);
  watchHereButton.addEventListener("click", watchHere);
  unmuteButton.addEventListener("click", () => {
    video.muted = false;
    unmuteButton.hidden = true;
  });

  if (config.access) {
    play(config.access);
  } else {
    requestQr();
  }
})();
