// A Matrix client with real E2EE for the Python tests (client.py): matrix-js-sdk 43 with its
// Rust crypto (the crypto of Element Web), in Node, without IndexedDB (memory store).
//
// Protocol: one JSON object per line. stdin: {"id": n, "op": "...", ...args};
// stdout: {"id": n, "ok": true, "result": ...} or {"id": n, "ok": false, "error": "..."}.
// The SDK's own logging goes to stderr (the caller's log file). When stdin closes, every
// client stops and the process exits. It talks only to the homeserver URL it is given.
import readline from "node:readline";
import { webcrypto } from "node:crypto";

// stdout carries the protocol only: everything the SDK prints goes to stderr.
for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
  console[level] = (...args) => process.stderr.write(`[${level}] ${args.map(String).join(" ")}\n`);
}
// matrix-js-sdk 43 declares Node >= 22; on Node 20 the one thing it misses is
// Promise.withResolvers (ES2024), so provide it before the SDK loads.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");

const clients = new Map(); // id -> {client, baseUrl, token}
let nextId = 1;

function send(msg) {
  process.stdout.write(JSON.stringify(msg) + "\n");
}

function entry(id) {
  const e = clients.get(id);
  if (!e) throw new Error(`no client ${id}`);
  return e;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, timeoutMs, fn) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(100);
  }
}

function b64decode(s) {
  return Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");
}

// A timeline event as the test sees it: decrypted when it can be.
async function view(client, ev) {
  if (ev.isEncrypted()) await client.decryptEventIfNeeded(ev);
  return {
    event_id: ev.getId(),
    sender: ev.getSender(),
    type: ev.getType(), // the clear type after decryption
    wire_type: ev.getWireType(),
    encrypted: ev.isEncrypted(),
    decryption_failure: ev.isDecryptionFailure() ? String(ev.decryptionFailureReason) : null,
    content: ev.getContent(),
    ts: ev.getTs(),
  };
}

const ops = {
  async login({ baseUrl, userId, deviceId, accessToken }) {
    const client = sdk.createClient({ baseUrl, userId, deviceId, accessToken });
    await client.initRustCrypto({ useIndexedDB: false });
    const toDevice = [];
    client.on(sdk.ClientEvent.ReceivedToDeviceMessage, ({ message, encryptionInfo }) => {
      toDevice.push({ type: message.type, sender: message.sender, content: message.content,
        encrypted: encryptionInfo !== null });
    });
    const ready = new Promise((resolve, reject) => {
      client.on(sdk.ClientEvent.Sync, (state) => {
        if (state === "PREPARED" || state === "SYNCING") resolve();
        if (state === "ERROR") reject(new Error("the first sync failed"));
      });
    });
    await client.startClient({ initialSyncLimit: 20 });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("no first sync within 30 s")), 30000);
    });
    try {
      await Promise.race([ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
    const id = nextId++;
    clients.set(id, { client, baseUrl, token: accessToken, toDevice });
    return { client: id };
  },

  async crossSignSelf({ client }) {
    const c = entry(client).client;
    const crypto = c.getCrypto();
    // Synapse lets a user upload their first cross-signing keys without auth (MSC3967).
    await crypto.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest(null);
      },
    });
    return await crypto.isCrossSigningReady();
  },

  async createEncryptedRoom({ client, invite, name, callMemberLevel }) {
    const c = entry(client).client;
    const level = callMemberLevel ?? 0;
    const { room_id } = await c.createRoom({
      name: name ?? "rtcbot e2ee test",
      preset: "private_chat",
      invite: invite ?? [],
      initial_state: [
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
      power_level_content_override: {
        events: { "org.matrix.msc3401.call.member": level, "m.rtc.member": level },
      },
    });
    await until(`room ${room_id} in the client's store`, 20000, () => c.getRoom(room_id));
    return room_id;
  },

  async waitForJoined({ client, roomId, userId, timeoutMs }) {
    const c = entry(client).client;
    await until(`${userId} joined ${roomId}`, timeoutMs ?? 20000, () =>
      c.getRoom(roomId)?.getMember(userId)?.membership === "join",
    );
    return null;
  },

  async isEncrypted({ client, roomId }) {
    return await entry(client).client.getCrypto().isEncryptionEnabledInRoom(roomId);
  },

  // A new Megolm session for the next message (as after a member left the room).
  async discardSession({ client, roomId }) {
    await entry(client).client.getCrypto().forceDiscardSession(roomId);
    return null;
  },

  async sendText({ client, roomId, body }) {
    const c = entry(client).client;
    const { event_id } = await c.sendTextMessage(roomId, body);
    return event_id;
  },

  // The first event from `sender` after `after` (or any) whose decrypted body contains
  // `contains` (or any), decrypted; `encryptedOnly` skips plaintext events.
  async waitForMessage({ client, roomId, sender, after, contains, timeoutMs, replyTo }) {
    const c = entry(client).client;
    return await until(`a message from ${sender} in ${roomId}`, timeoutMs ?? 30000, async () => {
      const room = c.getRoom(roomId);
      if (!room) return null;
      const events = room.getLiveTimeline().getEvents();
      let start = 0;
      if (after) {
        const i = events.findIndex((e) => e.getId() === after);
        start = i >= 0 ? i + 1 : 0;
      }
      for (const ev of events.slice(start)) {
        if (ev.getSender() !== sender) continue;
        const v = await view(c, ev);
        if (v.type !== "m.room.message") continue;
        if (contains && !String(v.content.body ?? "").includes(contains)) continue;
        if (replyTo && v.content["m.relates_to"]?.["m.in_reply_to"]?.event_id !== replyTo) continue;
        return v;
      }
      return null;
    });
  },

  async messages({ client, roomId }) {
    const c = entry(client).client;
    const room = c.getRoom(roomId);
    if (!room) return [];
    return await Promise.all(room.getLiveTimeline().getEvents().map((ev) => view(c, ev)));
  },

  async deviceStatus({ client, userId, deviceId }) {
    const crypto = entry(client).client.getCrypto();
    // Fetch the newest device list (the bot may have been cross-signed a moment ago).
    await crypto.getUserDeviceInfo([userId], true);
    const st = await crypto.getDeviceVerificationStatus(userId, deviceId);
    if (!st) return null;
    return {
      signedByOwner: st.signedByOwner,
      crossSigningVerified: st.crossSigningVerified,
      localVerified: st.localVerified,
      isVerified: st.isVerified(),
    };
  },

  // The shield Element would show on an event: {colour: NONE|GREY|RED, reason}. An event from
  // a device its owner has not cross-signed is RED / UNSIGNED_DEVICE (MSC4153).
  async eventShield({ client, roomId, eventId }) {
    const c = entry(client).client;
    const ev = c.getRoom(roomId)?.findEventById(eventId);
    if (!ev) throw new Error(`no event ${eventId} in ${roomId}`);
    await c.decryptEventIfNeeded(ev);
    const info = await c.getCrypto().getEncryptionInfoForEvent(ev);
    if (!info) return null;
    return {
      colour: cryptoApi.EventShieldColour[info.shieldColour],
      reason: info.shieldReason === null ? null : cryptoApi.EventShieldReason[info.shieldReason],
    };
  },

  // Download and decrypt an encrypted attachment (content.file), checking its SHA-256.
  async downloadAttachment({ client, file }) {
    const { baseUrl, token } = entry(client);
    const [server, mediaId] = file.url.replace("mxc://", "").split("/");
    const res = await fetch(`${baseUrl}/_matrix/client/v1/media/download/${server}/${mediaId}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    if (!res.ok) throw new Error(`download failed: HTTP ${res.status}`);
    const cipher = new Uint8Array(await res.arrayBuffer());
    const digest = Buffer.from(await webcrypto.subtle.digest("SHA-256", cipher))
      .toString("base64")
      .replace(/=+$/, "");
    if (digest !== file.hashes.sha256) throw new Error("the ciphertext's SHA-256 does not match");
    const key = await webcrypto.subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, [
      "decrypt",
    ]);
    const plain = new Uint8Array(
      await webcrypto.subtle.decrypt(
        { name: "AES-CTR", counter: b64decode(file.iv), length: 64 },
        key,
        cipher,
      ),
    );
    return { size: plain.length, head: Buffer.from(plain.slice(0, 64)).toString("base64") };
  },

  // Olm-encrypted to-device message to one device (as Element Call sends media keys).
  async sendToDevice({ client, userId, deviceId, type, content }) {
    const c = entry(client).client;
    await c.getCrypto().getUserDeviceInfo([userId], true);
    await c.encryptAndSendToDevice(type, [{ userId, deviceId }], content);
    return null;
  },

  // A sticky event (MSC4354), Megolm-encrypted in an encrypted room, as MSC4143 "current"
  // clients send their call membership.
  async sendSticky({ client, roomId, type, content, durationMs }) {
    const c = entry(client).client;
    const { event_id } = await c._unstable_sendStickyEvent(roomId, durationMs, null, type, content);
    return event_id;
  },

  async receivedToDevice({ client }) {
    return entry(client).toDevice;
  },

  async close({ client }) {
    const e = clients.get(client);
    if (e) {
      e.client.stopClient();
      clients.delete(client);
    }
    return null;
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  const op = ops[msg.op];
  try {
    if (!op) throw new Error(`unknown op ${msg.op}`);
    send({ id: msg.id, ok: true, result: (await op(msg)) ?? null });
  } catch (e) {
    send({ id: msg.id, ok: false, error: String(e?.stack ?? e) });
  }
});
rl.on("close", () => {
  for (const { client } of clients.values()) client.stopClient();
  process.exit(0);
});
send({ id: 0, ok: true, result: { ready: true, node: process.version } });
