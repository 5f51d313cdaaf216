// Receipt verification in the browser: nothing here takes the server's word.
//
// 1. fetch the event's receipt (the event, its inclusion proof, the signed checkpoint);
// 2. canonicalise the event (RFC 8785) and hash it: leaf = SHA-256(0x00 || bytes);
// 3. fold the inclusion proof up to a root (RFC 9162, section 2.1.3.2);
// 4. parse the checkpoint (C2SP tlog-checkpoint: origin, size, base64 root);
// 5. check its Ed25519 signature (C2SP signed note) with a verifier key the user trusts;
// 6. the folded root must be the signed root.
// Hashing and the signature check use Web Crypto (crypto.subtle).
(function () {
  "use strict";

  var PIN = "trailseal.pinnedVerifierKey";
  var DERIVED = ["seq", "leaf_hash", "chain_hash"];
  var encoder = new TextEncoder();
  var keyLoaded = Promise.resolve(); // the verifier key field is filled when this settles

  function Failure(message, detail) {
    this.message = message;
    this.detail = detail || "";
  }

  function bytesFromBase64(text) {
    var binary = atob(text);
    var out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }
  function base64(bytes) {
    var binary = "";
    bytes.forEach(function (b) { binary += String.fromCharCode(b); });
    return btoa(binary);
  }
  function hex(bytes) {
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
  function concat() {
    var parts = Array.from(arguments, function (p) { return p instanceof Uint8Array ? p : new Uint8Array(p); });
    var out = new Uint8Array(parts.reduce(function (n, p) { return n + p.length; }, 0));
    var at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  function sha256(bytes) {
    return crypto.subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
  }

  // RFC 8785: keys sorted by UTF-16 code units (what Array.prototype.sort does), numbers
  // and strings as ECMAScript's JSON.stringify writes them, no whitespace.
  function canonical(value) {
    if (value === null || typeof value === "boolean" || typeof value === "string") {
      return JSON.stringify(value);
    }
    if (typeof value === "number") {
      if (!isFinite(value)) throw new Failure("The event holds a number JSON cannot represent.");
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    return "{" + Object.keys(value).sort().map(function (key) {
      return JSON.stringify(key) + ":" + canonical(value[key]);
    }).join(",") + "}";
  }

  // RFC 9162, 2.1.3.2: the root that leaf `index` of a tree of `size` leads to.
  async function rootFromInclusion(index, size, leaf, path) {
    if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) {
      throw new Failure("The proof's index is not inside the tree.", "index " + index + ", size " + size);
    }
    var fn = index, sn = size - 1, r = leaf;
    for (var i = 0; i < path.length; i++) {
      if (sn === 0) throw new Failure("The inclusion proof is longer than this tree allows.");
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat([1], path[i], r));
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await sha256(concat([1], r, path[i]));
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Failure("The inclusion proof is shorter than this tree needs.");
    return r;
  }

  // C2SP signed note holding a tlog-checkpoint.
  function parseCheckpoint(text) {
    var split = text.indexOf("\n\n");
    if (split < 0) throw new Failure("The checkpoint is not a signed note.");
    var body = text.slice(0, split + 1);
    var lines = body.slice(0, -1).split("\n");
    if (lines.length < 3 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) {
      throw new Failure("The checkpoint's body is not origin, size and root.");
    }
    var signatures = text.slice(split + 2).split("\n").filter(Boolean).map(function (line) {
      if (line.indexOf("\u2014 ") !== 0) throw new Failure("The checkpoint has a malformed signature line.");
      var rest = line.slice(2), space = rest.lastIndexOf(" ");
      var raw = bytesFromBase64(rest.slice(space + 1));
      return { name: rest.slice(0, space), keyId: raw.slice(0, 4), signature: raw.slice(4) };
    });
    return {
      body: body, origin: lines[0], size: Number(lines[1]),
      root: bytesFromBase64(lines[2]), signatures: signatures,
    };
  }

  // C2SP verifier key: <name>+<key id hex>+<base64(0x01 || Ed25519 public key)>.
  async function parseVerifierKey(text) {
    // The name holds no "+", the key id is hex; the base64 data may hold "+".
    text = text.trim();
    var first = text.indexOf("+"), second = text.indexOf("+", first + 1);
    var parts = [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
    if (first < 1 || second < 0 || !/^[0-9a-f]{8}$/i.test(parts[1])) {
      throw new Failure("That is not a verifier key (name+keyid+data).");
    }
    var data;
    try { data = bytesFromBase64(parts[2]); } catch (e) { throw new Failure("The verifier key's data is not base64."); }
    if (data.length !== 33 || data[0] !== 1) throw new Failure("The verifier key is not an Ed25519 key.");
    var id = (await sha256(concat(encoder.encode(parts[0]), [0x0a], data))).slice(0, 4);
    if (hex(id) !== parts[1].toLowerCase()) throw new Failure("The verifier key's id does not match its name and key.");
    return { name: parts[0], id: id, publicKey: data.slice(1) };
  }

  async function verify(panel, report) {
    if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
      throw new Failure("This page is not in a secure context (HTTPS, or localhost), so the browser offers no Web Crypto to verify with.",
        "Serve the console over HTTPS, or check the receipt with trailseal.integrity.receipt.verify_receipt.");
    }
    await keyLoaded;
    var keyText = document.getElementById("verifier-key").value;
    var key = await parseVerifierKey(keyText);
    report("ok", "Verifier key " + key.name + " (key id " + hex(key.id) + ") read.");

    var response = await fetch(panel.dataset.receiptUrl, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Failure("No receipt: the server answered " + response.status + ".");
    var receipt = await response.json();
    var proof = receipt.inclusion_proof || {};
    report("ok", "Receipt fetched: an inclusion proof of " + (proof.hashes || []).length +
      " hashes into the tree of " + proof.size + " events.");

    var event = Object.assign({}, receipt.event || {});
    if (event.id !== panel.dataset.eventId) {
      throw new Failure("The receipt is for another event than this page's.", "receipt: " + event.id);
    }
    var seq = event.seq;
    DERIVED.forEach(function (name) { delete event[name]; });
    var bytes = encoder.encode(canonical(event));
    var leaf = await sha256(concat([0], bytes));
    document.getElementById("verify-canonical").textContent = new TextDecoder().decode(bytes);
    document.getElementById("verify-bytes").hidden = false;
    report("ok", "Leaf hash computed here from the event's " + bytes.length + " canonical bytes.", hex(leaf));
    if (proof.index !== seq) throw new Failure("The proof is for another position than the event's seq.");

    var path = (proof.hashes || []).map(bytesFromBase64);
    var root = await rootFromInclusion(proof.index, proof.size, leaf, path);
    report("ok", "Inclusion proof folded to a root (leaf " + proof.index + " of " + proof.size + ").", base64(root));

    var checkpoint = parseCheckpoint(receipt.checkpoint || "");
    var tenant = panel.dataset.tenant;
    if (checkpoint.origin.slice(-("/trailseal/" + tenant).length) !== "/trailseal/" + tenant) {
      throw new Failure("The checkpoint is for another log than this tenant's.", checkpoint.origin);
    }
    if (checkpoint.size !== proof.size) {
      throw new Failure("The proof is for a tree of " + proof.size + ", the checkpoint for " + checkpoint.size + ".");
    }
    report("ok", "Checkpoint of " + checkpoint.origin + " read: size " + checkpoint.size + ".", base64(checkpoint.root));

    var signature = checkpoint.signatures.find(function (s) {
      return s.name === key.name && equal(s.keyId, key.id);
    });
    if (!signature) throw new Failure("The checkpoint carries no signature by this verifier key.");
    var publicKey;
    try {
      publicKey = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      throw new Failure("This browser cannot check Ed25519 signatures.", String(e));
    }
    var valid = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signature.signature,
      encoder.encode(checkpoint.body));
    if (!valid) throw new Failure("The checkpoint's signature does not verify with this key: it was not signed by it, or was altered.");
    report("ok", "Checkpoint signature verified with " + key.name + ".");

    if (!equal(root, checkpoint.root)) {
      throw new Failure("The event does not lead to the signed root: this event, or its receipt, was altered after it was logged.",
        "computed " + base64(root) + ", signed " + base64(checkpoint.root));
    }
    report("ok", "The root computed from this event is the signed root.");
  }

  function run(panel) {
    var result = document.getElementById("verify-result");
    var steps = document.getElementById("verify-steps");
    var verdict = document.getElementById("verify-verdict");
    var button = document.getElementById("verify-button");
    steps.textContent = "";
    document.getElementById("verify-bytes").hidden = true;
    result.hidden = false;
    verdict.className = "verdict pending";
    verdict.textContent = "Verifying…";
    button.disabled = true;
    function report(kind, text, detail) {
      var item = document.createElement("li");
      item.className = kind;
      item.textContent = (kind === "ok" ? "✓ " : "✗ ") + text;
      if (detail) {
        var extra = document.createElement("span");
        extra.className = "detail mono";
        extra.textContent = detail;
        item.appendChild(extra);
      }
      steps.appendChild(item);
    }
    verify(panel, report).then(function () {
      verdict.className = "verdict ok";
      verdict.textContent = "✓ Verified: this event is in the log under the signed checkpoint.";
    }, function (error) {
      var failure = error instanceof Failure ? error : new Failure("Verification could not finish.", String(error));
      report("fail", failure.message, failure.detail);
      verdict.className = "verdict fail";
      verdict.textContent = "✗ Not verified: " + failure.message;
    }).finally(function () { button.disabled = false; });
  }

  function keyNote(text) {
    document.getElementById("key-origin").textContent = text;
  }

  function setup(panel) {
    if (!panel || panel.dataset.ready) return;
    panel.dataset.ready = "1";
    var input = document.getElementById("verifier-key");
    var forget = document.getElementById("forget-key");
    var pinned = null;
    try { pinned = localStorage.getItem(PIN); } catch (e) { pinned = null; }
    keyLoaded = fetch(panel.dataset.keyUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (text) {
        var served = (text.split("\n")[0] || "").trim();
        if (pinned) {
          input.value = pinned;
          forget.hidden = false;
          keyNote(served && served !== pinned
            ? "Pinned in this browser. The server now presents a different key (" + served + "): find out why before trusting either."
            : "Pinned in this browser: receipts are checked against this key, whatever the server says.");
        } else {
          input.value = served;
          keyNote(served
            ? "Fetched from this server: a key from the same server is only as trustworthy as the server. Compare it with one obtained elsewhere (the operator's published key), or paste that one, then pin it."
            : "The server offered no key: paste the operator's verifier key.");
        }
      }, function () { keyNote("The key could not be fetched: paste the operator's verifier key."); });
  }

  document.addEventListener("click", function (event) {
    var panel = document.getElementById("verify-panel");
    if (!panel || !event.target.closest) return;
    if (event.target.closest("#verify-button")) run(panel);
    if (event.target.closest("#pin-key")) {
      var value = document.getElementById("verifier-key").value.trim();
      parseVerifierKey(value).then(function () {
        localStorage.setItem(PIN, value);
        document.getElementById("forget-key").hidden = false;
        keyNote("Pinned in this browser: receipts are checked against this key, whatever the server says.");
      }, function (error) { keyNote(error.message || String(error)); });
    }
    if (event.target.closest("#forget-key")) {
      localStorage.removeItem(PIN);
      document.getElementById("forget-key").hidden = true;
      keyNote("No key pinned: the field holds whatever you put there, for this check only.");
    }
  });

  function init() { setup(document.getElementById("verify-panel")); }
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:load", init);
})();
