// The watch page: get a QR, hear the payment over the WebSocket, play, and hand back
// to the pay panel when access ends. It also waits out the start of a ticket bought
// ahead, sells the next window near the end, and keeps the player alive through origin
// outages. All text comes from the server (config.strings).
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("watch-config").textContent);
  const t = config.strings;
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const payPanel = $("pay-panel");
  const playerPanel = $("player-panel");
  const waitingPanel = $("waiting-panel");
  const devicePanel = $("device-panel");
  const deviceMoved = $("device-moved");
  const endedPanel = $("ended-panel");
  const watchHereButton = $("watch-here");
  const statusLine = $("status");
  const playerStatus = $("player-status");
  const qrImage = $("qr-image");
  const qrLoading = $("qr-loading");
  const payHints = [$("save-hint"), $("scan-instructions")];
  const qrMerchant = $("qr-merchant");
  const qrBlock = $("qr-block");
  const payCountdownLine = $("pay-countdown-line");
  const saveQr = $("save-qr");
  const newQrButton = $("new-qr");
  const simulateButton = $("simulate");
  const simulatorBox = simulateButton ? simulateButton.parentElement : null;
  const unmuteButton = $("unmute");
  const renewBox = $("renew-box");
  const renewText = $("renew-text");
  const renewButton = $("renew");
  const payCountdown = $("pay-countdown");
  const accessCountdown = $("access-countdown");
  const startCountdown = $("start-countdown");
  const payAnnouncer = $("pay-announcer");
  const accessAnnouncer = $("access-announcer");
  const startAnnouncer = $("start-announcer");

  // Retries after an origin failure: quick at first, then every few seconds, so the
  // picture is back within seconds of the origin.
  const RECOVERY_DELAYS_MS = [1000, 2000, 3000, 4000];
  // A live stream whose clock has not moved for this long is stuck, whatever the
  // player says about it.
  const STALL_MS = 5000;
  const API_TIMEOUT_MS = 8000;

  const state = {
    // "pay" | "play" | "wait" | "device" (paid, but playing elsewhere) | "ended" (the
    // ticket was taken away: revoked, refunded, show cancelled)
    mode: "pay",
    session: null, // the pending QR: {sessionId, trxId, qrCode, ...}
    renewal: false, // the pending QR is for the next window, bought while playing
    renewed: false, // the next window is paid
    watchedSessionId: null,
    payDeadline: null, // performance.now() based, immune to a wrong device clock
    accessDeadline: null, // the end of all access held, next window included
    windowEnd: null, // the end of the current session's window
    windowTimer: null,
    handoverTimer: null,
    windowSessionId: null, // the session whose window is open
    handedOver: null, // the window whose handover check-access was asked for
    startDeadline: null,
    startChecking: false,
    socket: null,
    lineSocket: null, // while waiting in line for a QR
    place: null, // {position, etaSeconds, atLeast, toldAt}: the last place told
    reconnectAttempt: 0,
    reconnectTimer: null,
    hls: null,
    playbackUrl: null,
    autoplay: false, // start playing whenever there is something to play
    ignorePausesUntil: 0,
    lastTime: null,
    lastTimeAt: 0, // performance.now() of the last clock report
    lastProgressAt: 0,
    recoveryAttempt: 0,
    recoveryTimer: null,
    disrupted: false,
  };

  const format = (template, values) =>
    template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));
  const minutesText = (n) => format(n === 1 ? t.unit_minute : t.unit_minutes, { n });
  // The server's way (i18n.rupiah), in either language: "Rp 25.000".
  const rupiah = (amount) => `Rp ${String(amount).replace(/\B(?=(\d{3})+(?!\d))/g, ".")}`;

  function setStatus(text) {
    statusLine.textContent = text;
  }

  function setPlayerStatus(text) {
    playerStatus.textContent = text || "";
    playerStatus.hidden = !text;
  }

  async function api(method, url, body) {
    // Bounded: a check stuck behind a dead origin's hanging requests must not stall
    // the page's recovery (or anything else) for good.
    const options = { method, credentials: "same-origin", headers: {},
                      signal: AbortSignal.timeout(API_TIMEOUT_MS) };
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

  // The server's message in the viewer's language, never a library's text.
  const errorText = (answer) => (answer.payload && answer.payload.error) || t.status_error;

  // ---- Paying -------------------------------------------------------------------

  async function requestQr() {
    const renewal = state.mode === "play";
    state.renewal = renewal;
    $("pay-heading").textContent = renewal ? t.renew_heading : t.pay_heading;
    if (renewal) {
      payPanel.hidden = false; // below the player, which keeps playing
    } else {
      showPayPanel();
    }
    newQrButton.hidden = true;
    showQrBlock();
    const answer = await api("POST", config.urls.generateQris, { streamId: config.streamId });
    if (answer.status === 409 && answer.payload.code === "already_has_access") {
      if (renewal) {
        payPanel.hidden = true;
        renewText.textContent = errorText(answer);
        return;
      }
      return startPlayback(); // paid already, e.g. in another tab
    }
    if (!answer.ok) {
      // Nothing to pay (provider down, stream off the air): no QR, no scan text, no clock.
      hideQr();
      setStatus(errorText(answer));
      const offline = answer.payload.code === "stream_offline";
      if (offline) $("pay-heading").textContent = t.offline_heading;
      newQrButton.textContent = t.retry_button; // no QR was made: try again, not "new"
      newQrButton.hidden = false;
      return;
    }
    if (answer.status === 202) return waitInLine(answer.payload.data);
    showQr(answer.payload.data);
  }

  // ---- Waiting in line (the provider's pace is used up): the place, then the QR -----

  function waitInLine(place) {
    showPlace(place);
    closeLineSocket();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${config.urls.ws}` +
                                 `?streamId=${encodeURIComponent(config.streamId)}`);
    state.lineSocket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "queue" && message.gone) {
        // Let go without a QR (e.g. the show went off the air while they waited):
        // asking again says why, or gives a new place.
        state.place = null;
        closeLineSocket();
        setStatus(t.queue_gone);
        requestQr();
      } else if (message.type === "queue") {
        showPlace(message);
      } else if (message.type === "qr") {
        closeLineSocket();
        showQr(message);
      }
    };
    socket.onclose = () => {
      // Dropped while waiting: ask again, which keeps the place (or gives the QR).
      if (state.lineSocket === socket) setTimeout(requestQr, 1000 + Math.random() * 2000);
    };
  }

  function showPlace(place) {
    // No code yet: nothing to scan or save, so none of the hints about doing so.
    for (const hint of payHints) hint.hidden = true;
    state.place = { position: place.position, etaSeconds: place.etaSeconds,
                    atLeast: place.etaAtLeast === true, toldAt: performance.now() };
    qrLoading.hidden = false;
    renderPlace();
    // The status line (announced to screen readers) says the place when the line tells
    // it; the wait, counting down every second, stays in the QR's box.
    setStatus(format(t.queue_status, { position: place.position }));
  }

  function renderPlace() {
    // The line says the place again every 2-10 s (less often the longer the wait): in
    // between, the wait counts down here.
    const place = state.place;
    if (place === null) return;
    const gone = (performance.now() - place.toldAt) / 1000;
    const seconds = Math.max(Math.min(1, place.etaSeconds),
                             Math.ceil(place.etaSeconds - gone));
    // Behind others of one's own address, later buyers may still go ahead: the wait
    // is then said as the least one, never as a promise.
    qrLoading.textContent = format(place.atLeast ? t.queue_place_at_least : t.queue_place,
                                   { position: place.position, seconds });
  }

  function closeLineSocket() {
    const socket = state.lineSocket;
    state.lineSocket = null;
    if (socket) socket.close(1000);
  }

  function showQr(session) {
    state.place = null;
    for (const hint of payHints) hint.hidden = false;
    state.session = session;
    payCountdownLine.hidden = false;
    if (simulatorBox) simulatorBox.hidden = false;
    qrImage.onload = () => {  // reveal it drawn, never as an empty box
      qrImage.hidden = false;
      qrLoading.hidden = true;
    };
    qrImage.onerror = () => setStatus(t.status_error);
    qrImage.src = session.qrCode;
    showMerchant(session);
    state.payDeadline = performance.now() + session.remainingTime;
    renderCountdowns();
    setStatus(t.status_waiting);
    if (simulateButton) simulateButton.disabled = false;
    listen(session.sessionId);
  }

  function showMerchant(session) {
    // Payers check the name and NMID against what their e-wallet shows.
    $("qr-merchant-name").textContent = session.merchantName || "";
    $("qr-nmid").textContent = session.nmid || "";
    qrMerchant.hidden = !(session.merchantName || session.nmid);
    // Same-phone payers save the image and pick it in their payment app: a card that
    // also says what, to whom and until when, not a bare code.
    saveQr.href = session.qrCard || session.qrCode;
    saveQr.download = `QRIS-${config.streamId}-Rp${session.amount}.png`;
    saveQr.hidden = false;
  }

  async function simulatePayment() {
    if (!state.session) return;
    simulateButton.disabled = true;
    const url = config.urls.simulatorPay.replace("TRX_ID", encodeURIComponent(state.session.trxId));
    const answer = await api("POST", url);
    if (!answer.ok) {
      setStatus(errorText(answer));
      simulateButton.disabled = false;
    }
    // The page changes when the WebSocket says "paid", as it would for a real payment.
  }

  function showPayPanel() {
    state.mode = "pay";
    playerPanel.hidden = true;
    waitingPanel.hidden = true;
    devicePanel.hidden = true;
    endedPanel.hidden = true;
    payPanel.hidden = false;
  }

  // The QR's frame (QRIS mark, save hint, scan instructions), still drawing its code.
  function showQrBlock() {
    qrBlock.hidden = false;
    qrImage.hidden = true;
    qrMerchant.hidden = true;
    saveQr.hidden = true;
    qrLoading.hidden = false;
    qrLoading.textContent = t.qr_loading;
    for (const hint of payHints) hint.hidden = false;
    if (simulateButton) simulateButton.disabled = true;
  }

  // No payable QR: none of what goes with one (no "scan", no clock counting nothing).
  function hideQr() {
    state.session = null;
    state.place = null;
    state.payDeadline = null;
    qrBlock.hidden = true;
    qrImage.hidden = true;
    qrLoading.hidden = true;
    qrMerchant.hidden = true;
    saveQr.hidden = true;
    payCountdownLine.hidden = true;
    if (simulateButton) simulateButton.disabled = true;
    if (simulatorBox) simulatorBox.hidden = true;
  }

  function qrExpired() {
    hideQr();
    renderCountdowns();
    if (state.renewal && state.mode === "play") {
      payPanel.hidden = true; // the offer stays in the player's renew box
      state.renewal = false;
      return;
    }
    setStatus(t.status_qr_expired);
    newQrButton.textContent = t.new_qr_button;
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
    if (state.mode === "ended") return; // said and done: the panel tells what happened
    const isQr = state.session && message.sessionId === state.session.sessionId;
    if (message.status === "pending") {
      state.payDeadline = performance.now() + message.remainingTime;
      renderCountdowns();
      if (state.mode === "pay") setStatus(t.status_waiting);
    } else if (message.status === "paid") {
      if (state.mode === "play" && isQr) {
        renewalPaid(message);
      } else if (state.mode === "play") {
        state.accessDeadline = performance.now() + message.remainingTime;
        renderCountdowns();
      } else if (state.mode === "pay") {
        hideQr();
        setStatus(t.status_paid);
        startPlayback();
      }
    } else if (message.status === "expired") {
      if (state.mode === "device") {
        refreshAccess(); // over, or taken away: check-access says which
      } else if (state.mode === "play" && !isQr) {
        refreshAccess();
      } else if (state.mode === "wait") {
        refreshAccess();
      } else {
        afterQrExpired();
      }
    }
  }

  async function afterQrExpired() {
    // A QR can end because an older one was paid late: then there is access to play.
    const access = await checkAccess();
    if (access && access.hasAccess && state.mode !== "play") return play(access);
    qrExpired();
  }

  // ---- Carrying on: the next window ------------------------------------------------

  function renewalPaid(message) {
    hideQr();
    payPanel.hidden = true;
    state.renewal = false;
    state.renewed = true;
    state.accessDeadline = performance.now() + message.remainingTime;
    renewBox.hidden = false;
    renewButton.hidden = true;
    renewText.textContent = t.renewed_until;
    state.handedOver = null; // ask again: the next window is there to hand over now
    scheduleHandover();
    renderCountdowns();
  }

  // Keys delivery: a player asks for a key only when the stream's key changes, with
  // the cookie it holds then. So once in the last config.handoverMs of each window,
  // ask check-access, which then hands over a paid next window's token (bought here or
  // on another device): a key asked for just after the end is never refused.
  function scheduleHandover() {
    clearTimeout(state.handoverTimer);
    const windowSessionId = state.windowSessionId;
    if (!config.handoverMs || state.handedOver === windowSessionId
        || state.windowEnd === null) return;
    const due = state.windowEnd - config.handoverMs / 2 - performance.now();
    state.handoverTimer = setTimeout(() => {
      state.handedOver = windowSessionId;
      refreshAccess();
    }, Math.max(0, due));
  }

  function scheduleWindowEnd(access) {
    clearTimeout(state.windowTimer);
    state.windowEnd = performance.now() + access.remainingTime;
    // When this window closes, ask again: a paid next window carries on at once
    // (with a fresh gate cookie), and no next window means access has ended.
    state.windowTimer = setTimeout(refreshAccess, access.remainingTime + 250);
  }

  async function refreshAccess() {
    const access = await checkAccess();
    if (access === null) {
      state.windowTimer = setTimeout(refreshAccess, 2000); // no verdict: ask again
      return;
    }
    if (access.deviceLimit) return showDevicePanel();
    if (!access.hasAccess) {
      if (access.endedReason) return showEndedPanel(access);
      if (state.mode === "wait" && access.startsIn !== undefined) return waitForStart(access);
      return state.mode === "play" || state.mode === "device" ? endPlayback() : qrExpired();
    }
    if (state.mode !== "play") return play(access);
    adoptAccess(access);
  }

  function adoptAccess(access) {
    state.accessDeadline = performance.now()
      + (access.next ? access.next.remainingTime : access.remainingTime);
    state.renewed = Boolean(access.next);
    state.playbackUrl = access.playbackUrl;
    state.windowSessionId = access.sessionId;
    scheduleWindowEnd(access);
    scheduleHandover();
    // One socket: the newest session is the one whose news matters (a pending next
    // window's QR while it is being paid).
    const pendingNext = state.renewal && state.session ? state.session.sessionId : null;
    listen(access.next ? access.next.sessionId : pendingNext || access.sessionId);
    if (!state.renewed && !state.renewal) {
      renewBox.hidden = true;
      renewButton.hidden = false;
    }
    renderCountdowns();
  }

  function renderRenewOffer(left) {
    if (state.mode !== "play" || state.renewed) return;
    if (left > config.renewWindowMs || left <= 0) {
      renewBox.hidden = true;
      return;
    }
    renewBox.hidden = false;
    renewButton.hidden = state.renewal;
    renewText.textContent = left <= config.warnBeforeMs
      ? format(t.access_ending_soon, { left: minutesText(Math.max(1, Math.ceil(left / 60000))) })
      : t.renew_offer;
  }

  // ---- Waiting for the start of a ticket bought ahead --------------------------------

  function waitForStart(ticket) {
    state.mode = "wait";
    payPanel.hidden = true;
    playerPanel.hidden = true;
    waitingPanel.hidden = false;
    state.startDeadline = performance.now() + ticket.startsIn;
    listen(ticket.sessionId);
    renderCountdowns();
  }

  async function startWhenDue() {
    if (state.startChecking) return;
    state.startChecking = true;
    const access = await checkAccess();
    state.startChecking = false;
    if (access && access.deviceLimit) return showDevicePanel();
    if (access && access.hasAccess) {
      state.startDeadline = null;
      waitingPanel.hidden = true;
      return play(access);
    }
    if (access && access.startsIn !== undefined) {
      // Our count was a little early (or the start moved): count again.
      state.startDeadline = performance.now() + Math.max(access.startsIn, 500);
    } else if (access && access.endedReason) {
      state.startDeadline = null;
      showEndedPanel(access);
    } else if (access) {
      state.startDeadline = null;
      waitingPanel.hidden = true;
      showPayPanel();
      requestQr();
    } else {
      state.startDeadline = performance.now() + 1000;
    }
  }

  // ---- Watching ------------------------------------------------------------------

  // The access answer, {deviceLimit: true} when the purchase plays on as many devices
  // as it may, or null when there is no verdict (the network blinked).
  function accessAnswer(answer) {
    if (answer.status === 403 && answer.payload.code === "device_limit") {
      return { deviceLimit: true };
    }
    return (answer.ok && answer.payload.data) || null;
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
    if (access && !access.deviceLimit) return endPlayback(access);
  }

  // Another device plays this purchase: say so (and, when it was playing here, that it
  // was moved away), and offer to move playback here.
  function showDevicePanel() {
    stopRecovery();
    detach();
    if (state.mode === "play") deviceMoved.hidden = false;
    state.mode = "device";
    payPanel.hidden = true;
    playerPanel.hidden = true;
    waitingPanel.hidden = true;
    devicePanel.hidden = false;
    watchHereButton.focus();
  }

  async function startPlayback() {
    const access = await checkAccess();
    if (access && access.deviceLimit) return showDevicePanel();
    if (access && access.hasAccess) return play(access);
    if (access && access.startsIn !== undefined) return waitForStart(access);
    if (access && access.endedReason) return showEndedPanel(access);
    setStatus(t.status_error);
    newQrButton.hidden = false;
  }

  function play(access) {
    state.mode = "play";
    state.session = null;
    state.payDeadline = null;
    if (access.deviceLimit) {
      listen(access.sessionId);
      return showDevicePanel();
    }
    payPanel.hidden = true;
    waitingPanel.hidden = true;
    devicePanel.hidden = true;
    deviceMoved.hidden = true;
    endedPanel.hidden = true;
    playerPanel.hidden = false;
    adoptAccess(access);
    attach(access.playbackUrl);
  }

  function attach(url) {
    detach();
    state.playbackUrl = url;
    state.autoplay = true;
    state.lastTime = null;
    state.lastTimeAt = performance.now();
    state.lastProgressAt = performance.now();
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url; // Safari, recent Chromium: the browser plays HLS itself
    } else if (window.Hls && window.Hls.isSupported()) {
      // When playback falls out of the live window (a slow machine, a long stall),
      // resume from media already buffered rather than the live edge: jumping to the
      // edge throws away the fragment in flight, and a player that keeps jumping never
      // plays at all.
      const hls = new window.Hls({ lowLatencyMode: true, liveSyncMode: "buffered" });
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (hls !== state.hls) return;
        if (data.response && data.response.code === 403) {
          // The gate said no: show why (pay panel, or another device), not a frozen frame.
          accessLost({ refused: true });
        } else if (data.fatal && data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else if (data.fatal) {
          disrupted(); // hls.js gave up on the origin: we keep trying
        }
      });
      // Media arriving is a live pipeline even before the picture moves: on a slow
      // machine the first frames take a while, and that is no outage. But only media the
      // playhead can reach: on a loaded machine hls.js chases the moving live edge,
      // seeking past what it buffers, and fragments landing behind the playhead would
      // otherwise hide a picture that never moves again.
      hls.on(window.Hls.Events.FRAG_BUFFERED, () => {
        if (playableAhead() !== null) state.lastProgressAt = performance.now();
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      state.hls = hls;
    } else {
      setStatus(t.no_hls);
      return;
    }
    startPlaying();
  }

  function startPlaying() {
    video.play().catch((error) => {
      // Nothing to play yet (the origin is down, the source was replaced): "canplay"
      // tries again once there is.
      if (video.error || !error || error.name !== "NotAllowedError") return;
      // Autoplay with sound needs a gesture the viewer may not have made (they paid on
      // their phone): start muted, offer the sound.
      video.muted = true;
      unmuteButton.hidden = false;
      video.play().catch(() => {});
    });
  }

  function detach() {
    state.ignorePausesUntil = performance.now() + 1000; // ours, not the viewer's
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
      if (state.mode === "play") adoptAccess(access); // e.g. the next window began
      // Refused, yet access holds: this device's grant was ended and check-access has
      // just given it a new one (in the cookie). Start again with it, after a pause: a
      // gate that refused a moment ago may take a few seconds to hear of the free place.
      if (refused) setTimeout(() => { if (state.mode === "play") attach(access.playbackUrl); }, 2000);
      return;
    }
    endPlayback(access);
  }

  function stopPlayback() {
    stopRecovery();
    clearTimeout(state.windowTimer);
    clearTimeout(state.handoverTimer);
    detach();
    state.autoplay = false;
    state.accessDeadline = null;
    state.renewed = false;
    state.renewal = false;
    renewBox.hidden = true;
    renderCountdowns();
  }

  // Access is over. Taken away early (`access.endedReason`): say what happened. Run
  // out: the pay panel offers the next ticket, with no QR until asked for.
  function endPlayback(access) {
    if (access && access.endedReason) return showEndedPanel(access);
    if (state.mode === "pay" || state.mode === "ended") return;
    stopPlayback();
    showPayPanel();
    hideQr();
    setStatus(t.status_access_ended);
    newQrButton.textContent = t.new_qr_button;
    newQrButton.hidden = false;
    newQrButton.focus();
  }

  // ---- Access taken away: revoked, refunded, show cancelled ----------------------

  // While a refund is still on its way, look again now and then, so the page says when
  // the money is back (without a reload).
  const REFUND_RECHECK_MS = 5000;
  const REFUND_RECHECKS = 24;
  let refundRechecks = 0;

  function showEndedPanel(ended) {
    const first = state.mode !== "ended";
    if (first) {
      stopPlayback();
      closeSocket(); // the ended session has nothing more to say
      hideQr();
      state.mode = "ended";
      payPanel.hidden = true;
      playerPanel.hidden = true;
      waitingPanel.hidden = true;
      devicePanel.hidden = true;
      endedPanel.hidden = false;
    }
    renderEnded(ended);
    if (first) $("ended-heading").focus();
    const moving = (ended.refunds || []).some((refund) => refund.status === "requested");
    if (moving && refundRechecks < REFUND_RECHECKS) {
      refundRechecks += 1;
      setTimeout(async () => {
        const access = await checkAccess();
        if (state.mode !== "ended") return;
        if (access && access.endedReason) showEndedPanel(access); // and look again
        else if (access && access.hasAccess) play(access); // bought again elsewhere
      }, REFUND_RECHECK_MS);
    }
  }

  function renderEnded(ended) {
    const texts = {
      revoked: [t.ended_revoked_heading, t.ended_revoked_text],
      refunded: [t.ended_refunded_heading, t.ended_refunded_text],
      cancelled: [t.cancelled_heading, ended.cancelReason
        ? format(t.cancelled_reason, { reason: ended.cancelReason }) : ""],
    };
    // A reason this page does not know yet is still an early end by the organiser.
    const [heading, text] = texts[ended.endedReason] || texts.revoked;
    $("ended-heading").textContent = heading;
    $("ended-text").textContent = text;
    $("ended-text").hidden = !text;
    const lines = (ended.refunds || []).map((refund) => {
      const line = document.createElement("p");
      line.className = "refund-state";
      line.textContent = format(t[`refund_state_${refund.status}`] || t.refund_state_requested,
                                { amount: rupiah(refund.amount) });
      return line;
    });
    $("ended-refunds").replaceChildren(...lines);
    if (config.supportUrl) $("ended-support-link").href = config.supportUrl;
    $("ended-support").hidden = !config.supportUrl;
  }

  // ---- Recovering from origin outages ----------------------------------------------

  // The origin failed (hls.js gave up, the browser reported an error, or the picture
  // froze): say so in plain words and attach again, with growing delays, until the
  // picture moves. Each attempt first asks check-access, so ended access still stops.
  function disrupted() {
    if (state.mode !== "play" || state.recoveryTimer !== null) return;
    state.disrupted = true;
    setPlayerStatus(t.playback_disrupted);
    const base = RECOVERY_DELAYS_MS[Math.min(state.recoveryAttempt,
      RECOVERY_DELAYS_MS.length - 1)];
    state.recoveryAttempt += 1;
    state.recoveryTimer = setTimeout(async () => {
      // Let go of the failing player first: its requests hanging on the origin must
      // not hold the browser's connections that the access check needs.
      detach();
      const access = await checkAccess();
      state.recoveryTimer = null;
      if (state.mode !== "play") return;
      if (access && access.deviceLimit) return showDevicePanel();
      if (access && !access.hasAccess) return endPlayback(access);
      if (access) adoptAccess(access);
      attach(state.playbackUrl);
    }, base * (0.8 + Math.random() * 0.4));
  }

  function stopRecovery() {
    clearTimeout(state.recoveryTimer);
    state.recoveryTimer = null;
    state.recoveryAttempt = 0;
    state.disrupted = false;
    setPlayerStatus("");
  }

  // Where playback can go on from: the playhead's position if it is inside buffered
  // media, the start of the next buffered range if it sits in a gap, or null when
  // there is nothing ahead of it to play.
  function playableAhead() {
    const now = video.currentTime;
    const ranges = video.buffered;
    for (let i = 0; i < ranges.length; i++) {
      if (ranges.end(i) - now > 0.1) return Math.max(now, ranges.start(i));
    }
    return null;
  }

  video.addEventListener("timeupdate", () => {
    // Progress is the picture playing: the clock moving forward no faster than time
    // passes. Not the first report after attaching, and not a seek (hls.js jumping to
    // the live edge moves the clock by seconds while nothing plays).
    const at = performance.now();
    const step = state.lastTime === null ? 0 : video.currentTime - state.lastTime;
    const moved = !video.seeking && step > 0 && step <= (at - state.lastTimeAt) / 1000 + 0.5;
    state.lastTime = video.currentTime;
    state.lastTimeAt = at;
    if (!moved) return;
    state.lastProgressAt = performance.now();
    // The picture moves again: unless a retry is already due (the player gave up, and
    // what still moves is the last of its buffer).
    if (state.disrupted && !video.paused && state.recoveryTimer === null) stopRecovery();
  });
  video.addEventListener("canplay", () => {
    if (state.mode === "play" && state.autoplay && video.paused) startPlaying();
  });
  video.addEventListener("play", () => { state.autoplay = true; });
  video.addEventListener("pause", () => {
    // A pause the viewer made, on a picture that could play (not an error, not our own
    // detach, not an outage): leave it paused.
    if (video.error || performance.now() < state.ignorePausesUntil || state.disrupted
        || video.readyState < 3) return;
    if (state.mode === "play") state.autoplay = false;
  });
  video.addEventListener("error", () => {
    if (state.mode !== "play" || !video.getAttribute("src")) return;
    disrupted(); // its retry asks check-access first: a refusal ends playback
  });

  // The stall watch: a playing picture that stops moving, or a recovery attempt that
  // has not got it moving, is an outage (a viewer's own pause is neither).
  // Each failed attempt gives the next one longer, so a slow start is not cut short
  // again and again.
  setInterval(() => {
    if (state.mode !== "play" || state.recoveryTimer !== null) return;
    if (video.paused && !state.disrupted) return;
    // Stuck in a hole in the buffer (a live player that skipped ahead, a fragment that
    // never came) while media waits further on: no error says so, so step over it.
    if (!video.paused && !video.seeking && video.readyState < 3) {
      const next = playableAhead();
      if (next !== null && next - video.currentTime > 0.05) video.currentTime = next + 0.05;
    }
    const limit = STALL_MS * Math.min(1 + state.recoveryAttempt, 4);
    if (performance.now() - state.lastProgressAt > limit) disrupted();
  }, 1000);
  video.addEventListener("progress", () => {
    // Native HLS downloading media again counts as a live pipeline too.
    if (state.disrupted) state.lastProgressAt = performance.now();
  });

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
  for (const event of ["stalled", "waiting"]) {
    video.addEventListener(event, probeAccessSoon);
  }

  // ---- Countdowns ----------------------------------------------------------------

  const lastAnnounced = { pay: null, access: null, start: null };

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
    renderPlace();
    const now = performance.now();
    if (state.payDeadline !== null) {
      const left = state.payDeadline - now;
      payCountdown.textContent = clock(left, false);
      announce("pay", payAnnouncer, t.pay_time_left, left);
    } else {
      payCountdown.textContent = "--:--";
      payAnnouncer.textContent = ""; // no time left to pay in when there is nothing to pay
      lastAnnounced.pay = null;
    }
    if (state.accessDeadline !== null) {
      const left = state.accessDeadline - now;
      accessCountdown.textContent = clock(left, true);
      announce("access", accessAnnouncer, t.access_left, left);
      renderRenewOffer(left);
    }
    if (state.startDeadline !== null && state.mode === "wait") {
      const left = state.startDeadline - now;
      startCountdown.textContent = clock(left, true);
      announce("start", startAnnouncer, t.starts_in_label, left);
      if (left <= 0) startWhenDue();
    }
  }
  setInterval(renderCountdowns, 250);

  // ---- Start ---------------------------------------------------------------------

  newQrButton.addEventListener("click", requestQr);
  renewButton.addEventListener("click", requestQr);
  if (simulateButton) simulateButton.addEventListener("click", simulatePayment);
  watchHereButton.addEventListener("click", watchHere);
  unmuteButton.addEventListener("click", () => {
    video.muted = false;
    unmuteButton.hidden = true;
  });

  if (config.cancelled) {
    // The show was called off: its page says so and where the money stands; nothing
    // more to sell, play or wait for.
  } else if (config.access) {
    play(config.access);
  } else if (config.ticket) {
    waitForStart(config.ticket);
  } else if (config.ended) {
    showEndedPanel(config.ended); // never a new QR for a ticket taken away
  } else if (!config.buyable) {
    showPayPanel();
    hideQr(); // nothing to pay, no clock to watch
    $("pay-heading").textContent = t.offline_heading;
    setStatus(t.stream_offline_note);
    newQrButton.textContent = t.retry_button;
    newQrButton.hidden = false;
  } else {
    requestQr();
  }
})();
