// Injected into every Element Call page before its own scripts (addInitScript).
// Keeps every RTCPeerConnection the page makes, so the harness can read what the page
// receives (inbound-rtp audio: audioLevel, totalAudioEnergy) and which LiveKit track and
// participant each receiver belongs to (the SDP msid "PA_…|TR_…" and the track id).
(() => {
  if (window.__rtcbot) return;
  const pcs = [];
  const Original = window.RTCPeerConnection;
  if (Original) {
    class Kept extends Original {
      constructor(...args) {
        super(...args);
        pcs.push(this);
      }
    }
    window.RTCPeerConnection = Kept;
    if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = Kept;
  }

  function msidsByMid(pc) {
    // mid -> {stream, track} from each media section's "a=msid:<stream> [<track>]" of the
    // remote description. LiveKit's stream id is "<participant sid>|<track sid>"; Chromium may
    // give the receiving track an id of its own, so the mid is the reliable key.
    const out = {};
    const sdp = pc.remoteDescription?.sdp ?? "";
    for (const section of sdp.split(/\r?\nm=/).slice(1)) {
      const mid = section.match(/^a=mid:(\S+)/m)?.[1];
      const msid = section.match(/^a=msid:(\S+)(?: (\S+))?/m);
      if (mid !== undefined && msid) out[mid] = { stream: msid[1], track: msid[2] ?? null };
    }
    return out;
  }

  async function inboundAudio() {
    const out = [];
    for (const [index, pc] of pcs.entries()) {
      if (pc.connectionState === "closed") continue;
      let stats;
      try {
        stats = await pc.getStats();
      } catch (e) {
        continue;
      }
      const byMid = msidsByMid(pc);
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "audio") return;
        out.push({
          pc: index,
          mid: s.mid ?? null,
          ssrc: s.ssrc,
          trackIdentifier: s.trackIdentifier ?? null,
          streamId: byMid[s.mid]?.stream ?? null,
          msidTrack: byMid[s.mid]?.track ?? null,
          audioLevel: s.audioLevel ?? 0,
          totalAudioEnergy: s.totalAudioEnergy ?? 0,
          totalSamplesDuration: s.totalSamplesDuration ?? 0,
          packetsReceived: s.packetsReceived ?? 0,
          bytesReceived: s.bytesReceived ?? 0,
          concealedSamples: s.concealedSamples ?? 0,
          totalSamplesReceived: s.totalSamplesReceived ?? 0,
        });
      });
    }
    return out;
  }

  function tiles() {
    return [...document.querySelectorAll('[data-testid="videoTile"]')].map((t) => {
      const text = (t.innerText ?? "").trim();
      const idEl = t.querySelector('[title="rtcBackendIdentity"]');
      return {
        name: t.querySelector('[data-testid="name_tag"]')?.textContent?.trim() ?? null,
        text,
        identity: idEl ? idEl.textContent.replace(/^rtcBackendIdentity:/, "").trim() : null,
        videoEnabled: t.getAttribute("data-video-enabled") === "true",
        waitingForMedia: /waiting for media/i.test(text),
      };
    });
  }

  function tilePictures() {
    // What each tile's video shows, sampled: a 160×90 copy of the current frame, the share of
    // clearly red pixels (rtcbot's "● Recording" dot) and the mean colour.
    return [...document.querySelectorAll('[data-testid="videoTile"]')].map((t) => {
      const name = t.querySelector('[data-testid="name_tag"]')?.textContent?.trim() ?? null;
      const video = t.querySelector("video");
      let picture = null;
      if (video && video.videoWidth > 0 && video.readyState >= 2) {
        const w = 160;
        const h = 90;
        const canvas = document.createElement("canvas");
        canvas.width = w;
        canvas.height = h;
        const ctx = canvas.getContext("2d", { willReadFrequently: true });
        ctx.drawImage(video, 0, 0, w, h);
        const d = ctx.getImageData(0, 0, w, h).data;
        let red = 0;
        const sum = [0, 0, 0];
        for (let i = 0; i < d.length; i += 4) {
          sum[0] += d[i];
          sum[1] += d[i + 1];
          sum[2] += d[i + 2];
          if (d[i] > 170 && d[i + 1] < 100 && d[i + 2] < 100) red++;
        }
        const n = d.length / 4;
        picture = {
          width: video.videoWidth,
          height: video.videoHeight,
          redShare: red / n,
          meanRgb: sum.map((v) => v / n),
        };
      }
      return { name, picture };
    });
  }

  function state() {
    const has = (id) => document.querySelector(`[data-testid="${id}"]`) !== null;
    // EC's full-screen ErrorView: a CSS-module "_error_…" box with an h1 title
    const errorBox = document.querySelector('[class*="_error_"] > h1')?.parentElement;
    return {
      error: errorBox ? errorBox.innerText.replace(/\s+/g, " ").trim().slice(0, 400) : null,
      // the login or "join as guest" form: the injected session was not accepted
      loggedOut: has("joincall_joincall") || has("login_login") || has("home_login"),
      lobby: has("lobby_joinCall"),
      inCall: has("incall_leave"),
      tiles: document.querySelectorAll('[data-testid="videoTile"]').length,
      peerConnections: pcs.filter((pc) => pc.connectionState !== "closed").length,
      connected: pcs.filter((pc) => pc.connectionState === "connected").length,
      title: document.title,
      text: (document.body?.innerText ?? "").replace(/\s+/g, " ").trim().slice(0, 600),
    };
  }

  window.__rtcbot = { pcs, inboundAudio, tiles, tilePictures, state };
})();
