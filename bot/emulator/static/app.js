// The chatops dev page: a Slack channel backed by the emulator (bot/emulator/server.py).
// State comes from GET /emulator/state, live changes from the WebSocket /emulator/ws; message bodies arrive
// already rendered (message.html, Block Kit -> HTML on the server). This script draws the sidebar, the channel,
// threads and modals, and turns typing and clicks into /emulator/command, /emulator/message, /emulator/action
// and /emulator/view calls. Vanilla JS, no build step.
"use strict";

(function () {
  const S = {
    team: null,
    users: new Map(),
    channels: new Map(),
    messages: new Map(), // channel id -> [message] in ts order
    notes: new Map(), // channel id -> [local notes such as failed commands]
    unread: new Set(),
    me: localStorage.getItem("chatops.me") || "",
    current: "",
    thread: null, // {channel, ts}
    view: null, // open modal for me: {view, html}
    views: new Map(), // view id -> {user, view, html}
    socket: null,
    loading: false,
    buffered: [],
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // ---------------------------------------------------------------------------------------------- data helpers

  const isReply = (m) => !!m.thread_ts && m.thread_ts !== m.ts;
  const visible = (m) => !m.ephemeral_to || m.ephemeral_to === S.me;
  const inMainList = (m) => visible(m) && (!isReply(m) || m.subtype === "thread_broadcast");
  const tsNum = (ts) => parseFloat(ts || "0");
  const userOf = (id) => S.users.get(id) || { id, label: id, color: "#868686", is_bot: false };

  function initials(name) {
    const parts = String(name || "?").replace(/[^\p{L}\p{N} ]/gu, " ").trim().split(/\s+/);
    return ((parts[0] || "?")[0] + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
  }

  function avatar(user, small) {
    const node = el("div", "avatar" + (small ? " small" : ""), user.is_bot ? "⚙" : initials(user.label || user.name));
    node.style.background = user.color || "#868686";
    node.title = user.label || user.name || user.id;
    return node;
  }

  function timeOf(ts) {
    const date = new Date(tsNum(ts) * 1000);
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function channelLabel(channel) {
    if (!channel) return "";
    return channel.is_im ? userOf(S.team.bot_user_id).label : "#" + channel.name;
  }

  function upsertMessage(channelId, message) {
    const list = S.messages.get(channelId) || [];
    const index = list.findIndex((m) => m.ts === message.ts);
    let existed = index >= 0;
    if (existed) list[index] = message;
    else {
      let at = list.length;
      while (at > 0 && tsNum(list[at - 1].ts) > tsNum(message.ts)) at--;
      list.splice(at, 0, message);
    }
    S.messages.set(channelId, list);
    return existed;
  }

  function removeMessage(channelId, ts) {
    const list = S.messages.get(channelId) || [];
    S.messages.set(channelId, list.filter((m) => m.ts !== ts));
  }

  // ------------------------------------------------------------------------------------------------- sidebar

  function renderSidebar() {
    const channels = $("channel-list");
    const dms = $("dm-list");
    channels.textContent = "";
    dms.textContent = "";
    const sorted = [...S.channels.values()].sort((a, b) => channelLabel(a).localeCompare(channelLabel(b)));
    for (const channel of sorted) {
      // A DM is the app's conversation with one person: only that person sees it.
      if (channel.is_im ? channel.user !== S.me : channel.is_private && !channel.members.includes(S.me)) continue;
      const li = el("li");
      const a = el("a");
      a.dataset.testid = "channel-link";
      a.dataset.channel = channel.id;
      a.href = "#" + channel.id;
      if (channel.id === S.current) a.classList.add("active");
      if (S.unread.has(channel.id)) a.classList.add("unread");
      if (channel.is_im) {
        const av = avatar(userOf(S.team.bot_user_id), true);
        av.classList.add("dm-avatar");
        a.append(av);
      } else {
        a.append(el("span", "hash", channel.is_private ? "🔒" : "#"));
      }
      a.append(el("span", "label", channel.is_im ? userOf(S.team.bot_user_id).label : channel.name));
      if (S.unread.has(channel.id)) {
        const dot = el("span", "unread-dot");
        dot.dataset.testid = "unread";
        a.append(dot);
      }
      li.append(a);
      (channel.is_im ? dms : channels).append(li);
    }
    if (!dms.children.length) {
      const li = el("li");
      li.append(el("div", "side-empty", "The app has not written to you yet"));
      dms.append(li);
    }
  }

  function renderWhoami() {
    const select = $("user-select");
    select.textContent = "";
    for (const user of S.users.values()) {
      if (user.is_bot) continue;
      const option = el("option", "", `${user.label} (@${user.name})`);
      option.value = user.id;
      if (user.id === S.me) option.selected = true;
      select.append(option);
    }
  }

  // ------------------------------------------------------------------------------------------------ messages

  function messageNode(message, channelId, options) {
    const opts = options || {};
    const user = userOf(message.user);
    const node = el("div", "message");
    node.dataset.testid = "message";
    node.dataset.ts = message.ts;
    node.dataset.channel = channelId;
    if (message.ephemeral_to) node.classList.add("ephemeral");
    if (message.subtype === "tombstone") node.classList.add("tombstone");
    if (message.subtype && message.subtype.startsWith("channel_")) node.classList.add("system");
    if (opts.continued) node.classList.add("continued");
    const body = el("div", "msg-body");
    if (message.pinned_to && message.pinned_to.length) body.append(el("div", "pinned-label", "📌 Pinned"));
    if (message.ephemeral_to) {
      const label = el("div", "ephemeral-label", "Only visible to you");
      label.dataset.testid = "ephemeral";
      body.append(label);
    }
    if (message.subtype === "thread_broadcast" && !opts.inThread) {
      body.append(el("div", "pinned-label", "replied to a thread"));
    }
    const head = el("div", "msg-head");
    head.append(el("span", "author", message.subtype === "tombstone" ? "" : (message.username || user.label)));
    if (message.bot_id) head.append(el("span", "app-badge", "APP"));
    const time = el("span", "time", timeOf(message.ts));
    time.title = message.ts;
    head.append(time);
    body.append(head);
    const content = el("div", "msg-content");
    content.innerHTML = message.html || "";
    for (const img of content.querySelectorAll("img")) {
      img.addEventListener("error", () => img.classList.add("broken"), { once: true });
    }
    if (message.edited) {
      const edited = el("span", "edited", "(edited)");
      edited.dataset.testid = "edited";
      const last = content.querySelector(".msg-text, .blk-section:last-child .sec-text, .blk-rich-text");
      (last || content).append(edited);
    }
    body.append(content);
    if (!opts.inThread && message.reply_count && !isReply(message)) body.append(repliesLink(message, channelId));
    node.append(avatar(user), body);
    return node;
  }

  function repliesLink(message, channelId) {
    const link = el("a", "replies");
    link.dataset.testid = "replies";
    for (const id of (message.reply_users || []).slice(0, 4)) link.append(avatar(userOf(id), true));
    const n = message.reply_count;
    link.append(el("span", "count", `${n} ${n === 1 ? "reply" : "replies"}`));
    if (message.latest_reply) link.append(el("span", "last", "Last reply " + timeOf(message.latest_reply)));
    link.addEventListener("click", () => openThread(channelId, message.ts));
    return link;
  }

  function noteNode(note) {
    const node = el("div", "message ephemeral");
    node.dataset.testid = "command-error";
    const body = el("div", "msg-body");
    const label = el("div", "ephemeral-label", "Only visible to you");
    label.dataset.testid = "ephemeral";
    const head = el("div", "msg-head");
    head.append(el("span", "author", "Slackbot"), el("span", "time", timeOf(note.ts)));
    const content = el("div", "msg-content", note.text);
    body.append(label, head, content);
    const bot = { label: "Slackbot", color: "#2eb67d", is_bot: false };
    const av = avatar(bot);
    av.textContent = "✱";
    node.append(av, body);
    return node;
  }

  function continues(previous, message) {
    return previous && previous.user === message.user && !previous.ephemeral_to && !message.ephemeral_to
      && !previous.subtype && !message.subtype && !previous.reply_count
      && tsNum(message.ts) - tsNum(previous.ts) < 300;
  }

  function renderChannel() {
    const channel = S.channels.get(S.current);
    const box = $("messages");
    $("channel-title").textContent = channel ? (channel.is_im ? userOf(S.team.bot_user_id).label : (channel.is_private ? "🔒 " : "# ") + channel.name) : "";
    $("channel-topic").textContent = channel && channel.topic ? channel.topic : "";
    $("channel-members").textContent = channel ? `👥 ${channel.members.length}` : "";
    $("composer").placeholder = "Message " + channelLabel(channel);
    box.textContent = "";
    const shown = (S.messages.get(S.current) || []).filter(inMainList);
    const notes = S.notes.get(S.current) || [];
    if (!shown.length && !notes.length && channel) {
      const empty = el("div", "empty-channel");
      empty.append(el("h2", "", channelLabel(channel)));
      empty.append(el("div", "", "This is the very beginning of " + channelLabel(channel) + ". Type /chatops help below."));
      box.append(empty);
    }
    const items = [...shown.map((m) => ({ ts: m.ts, message: m })), ...notes.map((n) => ({ ts: n.ts, note: n }))]
      .sort((a, b) => tsNum(a.ts) - tsNum(b.ts));
    let previous = null;
    for (const item of items) {
      if (item.note) { box.append(noteNode(item.note)); previous = null; continue; }
      box.append(messageNode(item.message, S.current, { continued: continues(previous, item.message) }));
      previous = item.message;
    }
    box.scrollTop = box.scrollHeight;
  }

  function nearBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  // Applies one message change to what is on screen, in place when the message is already shown.
  function showMessage(channelId, message, existed) {
    if (channelId === S.current) {
      const box = $("messages");
      const stick = nearBottom(box);
      const old = box.querySelector(`[data-testid="message"][data-ts="${CSS.escape(message.ts)}"]`);
      if (!inMainList(message)) {
        if (old) old.remove();
      } else if (old) {
        const fresh = messageNode(message, channelId, { continued: old.classList.contains("continued") });
        old.replaceWith(fresh);
        if (existed) fresh.classList.add("flash");
      } else {
        renderChannel();
        if (!stick) return;
      }
      if (stick) box.scrollTop = box.scrollHeight;
    } else if (!existed && inMainList(message) && message.user !== S.me) {
      S.unread.add(channelId);
      renderSidebar();
    }
    if (S.thread && S.thread.channel === channelId && (message.ts === S.thread.ts || message.thread_ts === S.thread.ts)) {
      renderThread(existed ? message.ts : null);
    }
  }

  // -------------------------------------------------------------------------------------------------- threads

  function openThread(channelId, ts) {
    S.thread = { channel: channelId, ts };
    $("thread").classList.remove("hidden");
    renderThread();
    $("thread-composer").focus();
  }

  function closeThread() {
    S.thread = null;
    $("thread").classList.add("hidden");
  }

  function renderThread(flashTs) {
    if (!S.thread) return;
    const { channel, ts } = S.thread;
    const list = (S.messages.get(channel) || []).filter((m) => visible(m) && (m.ts === ts || m.thread_ts === ts));
    const parent = list.find((m) => m.ts === ts);
    const replies = list.filter((m) => m.ts !== ts);
    const body = $("thread-body");
    const stick = nearBottom(body);
    body.textContent = "";
    $("thread-channel").textContent = channelLabel(S.channels.get(channel));
    if (parent) body.append(messageNode(parent, channel, { inThread: true }));
    if (replies.length) body.append(el("div", "thread-divider", `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`));
    for (const reply of replies) {
      const node = messageNode(reply, channel, { inThread: true });
      if (reply.ts === flashTs) node.classList.add("flash");
      body.append(node);
    }
    if (stick || !flashTs) body.scrollTop = body.scrollHeight;
  }

  // ---------------------------------------------------------------------------------------------------- modal

  function showView(entry) {
    S.view = entry;
    $("modal-title").textContent = (entry.view.title && entry.view.title.text) || "";
    $("modal-body").innerHTML = entry.html;
    $("modal-error").textContent = "";
    $("modal-submit").textContent = (entry.view.submit && entry.view.submit.text) || "Submit";
    $("modal-submit").classList.toggle("hidden", !entry.view.submit && !entry.view.blocks.some((b) => b.type === "input"));
    $("modal-cancel").textContent = (entry.view.close && entry.view.close.text) || "Cancel";
    $("modal").classList.remove("hidden");
    const first = $("modal-body").querySelector("[data-input]");
    if (first && first.focus) first.focus();
  }

  function hideView() {
    S.view = null;
    $("modal").classList.add("hidden");
    $("modal-body").textContent = "";
  }

  function latestViewFor(user) {
    let found = null;
    for (const entry of S.views.values()) if (entry.user === user) found = entry;
    return found;
  }

  function refreshView() {
    const entry = latestViewFor(S.me);
    if (entry) showView(entry);
    else hideView();
  }

  function collectValues() {
    const values = {};
    for (const input of $("modal-body").querySelectorAll("[data-input]")) {
      const block = input.dataset.blockId;
      const action = input.dataset.actionId;
      let value;
      if (input.classList.contains("sk-choices")) {
        value = [...input.querySelectorAll("input:checked")].map((box) => box.value);
        if (input.dataset.kind === "radio_buttons") value = value[0] || null;
      } else if (input.multiple) {
        value = [...input.selectedOptions].map((o) => o.value).filter(Boolean);
      } else {
        value = input.value === "" ? null : input.value;
      }
      values[block] = values[block] || {};
      values[block][action] = value;
    }
    return values;
  }

  async function submitView(event) {
    event.preventDefault();
    if (!S.view) return;
    const viewId = S.view.view.id;
    const button = $("modal-submit");
    button.disabled = true;
    button.classList.add("busy");
    for (const box of $("modal-body").querySelectorAll(".input-error")) box.textContent = "";
    for (const box of $("modal-body").querySelectorAll(".blk-input")) box.classList.remove("has-error");
    try {
      const answer = await post("/emulator/view", { view_id: viewId, user: S.me, values: collectValues() });
      if (answer.errors) {
        for (const [blockId, text] of Object.entries(answer.errors)) {
          const slot = $("modal-body").querySelector(`.input-error[data-error-for="${CSS.escape(blockId)}"]`);
          if (slot) {
            slot.textContent = text;
            slot.closest(".blk-input").classList.add("has-error");
          } else $("modal-error").textContent = text;
        }
      } else if (!answer.ok) {
        $("modal-error").textContent = "We had some trouble connecting. Try again? (" + (answer.error || "HTTP " + answer.status) + ")";
      } else if (answer.closed) {
        S.views.delete(viewId);
        refreshView();
      }
    } finally {
      button.disabled = false;
      button.classList.remove("busy");
    }
  }

  async function cancelView() {
    if (!S.view) return;
    const id = S.view.view.id;
    S.views.delete(id);
    refreshView();
    await post("/emulator/view/close", { view_id: id, user: S.me });
  }

  // ------------------------------------------------------------------------------------------ talking to it

  async function post(url, body) {
    try {
      const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const data = await response.json().catch(() => ({}));
      return Object.assign({ status: response.status }, data);
    } catch (error) {
      return { ok: false, error: String(error) };
    }
  }

  function toast(text) {
    const box = $("toast");
    box.textContent = text;
    box.classList.remove("hidden");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => box.classList.add("hidden"), 4000);
  }

  async function send(textarea, threadTs) {
    const text = textarea.value.trim();
    if (!text) return;
    textarea.value = "";
    autosize(textarea);
    const channel = threadTs ? S.thread.channel : S.current;
    if (text.startsWith("/")) {
      const answer = await post("/emulator/command", { channel, user: S.me, text });
      if (answer.status === 400) toast(answer.error || "could not run the command");
    } else {
      const answer = await post("/emulator/message", { channel, user: S.me, text, thread_ts: threadTs || null });
      if (!answer.ok) toast(answer.error || "could not send the message");
    }
  }

  async function act(control, payload) {
    const messageNode = control.closest('[data-testid="message"]');
    if (!messageNode) {
      toast("Buttons inside modals are not emulated; use the message's buttons.");
      return;
    }
    const started = Date.now();
    control.disabled = true;
    if (control.tagName === "BUTTON") control.classList.add("busy");
    const previousError = messageNode.querySelector(".action-error");
    if (previousError) previousError.remove();
    const answer = await post("/emulator/action", Object.assign({
      channel: messageNode.dataset.channel,
      message_ts: messageNode.dataset.ts,
      user: S.me,
      action_id: control.dataset.actionId,
      block_id: control.dataset.blockId || null,
    }, payload));
    const wait = Math.max(0, 350 - (Date.now() - started));
    setTimeout(() => {
      control.disabled = false;
      control.classList.remove("busy");
    }, wait);
    if (!answer.ok) {
      const note = el("div", "action-error", "⚠ " + (answer.error || "The app responded with HTTP " + answer.status));
      (control.closest(".blk") || messageNode).after(note);
    }
  }

  function onClick(event) {
    const button = event.target.closest("button[data-action-id]");
    if (!button || button.disabled) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    if (button.dataset.url) window.open(button.dataset.url, "_blank", "noopener");
    act(button, { value: button.dataset.value || null });
  }

  function onChange(event) {
    const select = event.target.closest("select[data-action-id]");
    if (!select || select.hasAttribute("data-input")) return;
    if (!select.value) return;
    act(select, { selected_option: select.value, value: select.value });
  }

  function autosize(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight, 160) + "px";
  }

  // --------------------------------------------------------------------------------------------- live updates

  function onEvent(event) {
    if (S.loading) {
      S.buffered.push(event);
      return;
    }
    switch (event.type) {
      case "message": {
        const existed = upsertMessage(event.channel, event.message);
        showMessage(event.channel, event.message, existed);
        break;
      }
      case "message_deleted": {
        removeMessage(event.channel, event.ts);
        if (event.channel === S.current) {
          const node = $("messages").querySelector(`[data-testid="message"][data-ts="${CSS.escape(event.ts)}"]`);
          if (node) node.remove();
        }
        if (S.thread && S.thread.channel === event.channel) {
          if (S.thread.ts === event.ts) closeThread();
          else renderThread();
        }
        break;
      }
      case "channel": {
        S.channels.set(event.channel.id, event.channel);
        renderSidebar();
        if (event.channel.id === S.current) {
          $("channel-topic").textContent = event.channel.topic || "";
          $("channel-members").textContent = `👥 ${event.channel.members.length}`;
        }
        break;
      }
      case "view": {
        S.views.set(event.view.id, { user: event.user, view: event.view, html: event.html });
        if (event.user === S.me) showView(S.views.get(event.view.id));
        break;
      }
      case "view_closed": {
        S.views.delete(event.view_id);
        if (S.view && S.view.view.id === event.view_id) refreshView();
        break;
      }
      case "command_error": {
        if (event.user !== S.me) break;
        const notes = S.notes.get(event.channel) || [];
        notes.push({ ts: String(Date.now() / 1000), text: event.text });
        S.notes.set(event.channel, notes);
        if (event.channel === S.current) renderChannel();
        break;
      }
      case "action_error":
        if (event.user === S.me) toast(`${event.action_id}: ${event.text}`);
        break;
      default:
        break;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/emulator/ws`);
    S.socket = socket;
    socket.onopen = () => {
      $("conn-dot").className = "conn-dot up";
      $("conn-text").textContent = "connected";
      load(); // catch up on anything missed while disconnected
    };
    socket.onmessage = (message) => onEvent(JSON.parse(message.data));
    socket.onclose = () => {
      $("conn-dot").className = "conn-dot down";
      $("conn-text").textContent = "disconnected, retrying…";
      setTimeout(connect, 1000);
    };
  }

  async function load() {
    S.loading = true;
    let state;
    try {
      const response = await fetch("/emulator/state");
      state = await response.json();
    } finally {
      S.loading = false;
    }
    S.team = state.team;
    S.users = new Map(state.users.map((u) => [u.id, u]));
    S.channels = new Map(state.channels.map((c) => [c.id, c]));
    S.messages = new Map(Object.entries(state.messages));
    S.views = new Map(state.views.map((v) => [v.view.id, v]));
    if (!S.users.has(S.me) || userOf(S.me).is_bot) S.me = state.team.me;
    $("team-name").textContent = state.team.name;
    $("search-team").textContent = state.team.name;
    if (!state.app_connected) {
      $("conn-dot").className = "conn-dot";
      $("conn-text").textContent = "no bot connected (app_url unset)";
    }
    const wanted = location.hash.slice(1).split("/")[0];
    if (!S.current || !S.channels.has(S.current)) {
      S.current = S.channels.has(wanted) ? wanted : (state.channels.find((c) => c.name === "general") || state.channels[0] || {}).id;
    }
    renderWhoami();
    renderSidebar();
    renderChannel();
    renderThread();
    refreshView();
    const target = location.hash.slice(1).split("/")[1];
    if (target) {
      const node = $("messages").querySelector(`[data-ts="${CSS.escape(target)}"]`);
      if (node) { node.classList.add("target"); node.scrollIntoView({ block: "center" }); }
    }
    const missed = S.buffered.splice(0);
    for (const event of missed) onEvent(event);
  }

  function selectChannel(id) {
    if (!S.channels.has(id)) return;
    S.current = id;
    S.unread.delete(id);
    if (location.hash.slice(1) !== id) history.replaceState(null, "", "#" + id);
    renderSidebar();
    renderChannel();
    $("composer").focus();
  }

  // -------------------------------------------------------------------------------------------------- wiring

  document.addEventListener("click", onClick);
  document.addEventListener("change", onChange);
  $("channel-list").addEventListener("click", (e) => {
    const link = e.target.closest("a[data-channel]");
    if (link) { e.preventDefault(); selectChannel(link.dataset.channel); }
  });
  $("dm-list").addEventListener("click", (e) => {
    const link = e.target.closest("a[data-channel]");
    if (link) { e.preventDefault(); selectChannel(link.dataset.channel); }
  });
  window.addEventListener("hashchange", () => selectChannel(location.hash.slice(1).split("/")[0]));
  $("user-select").addEventListener("change", (e) => {
    S.me = e.target.value;
    localStorage.setItem("chatops.me", S.me);
    S.unread.clear();
    renderSidebar();
    renderChannel();
    renderThread();
    refreshView();
  });
  for (const [id, threadTs] of [["composer", false], ["thread-composer", true]]) {
    const box = $(id);
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        send(box, threadTs ? S.thread && S.thread.ts : null);
      }
    });
    box.addEventListener("input", () => autosize(box));
  }
  $("send").addEventListener("click", () => send($("composer"), null));
  $("thread-close").addEventListener("click", closeThread);
  $("modal-form").addEventListener("submit", submitView);
  $("modal-cancel").addEventListener("click", cancelView);
  $("modal-close").addEventListener("click", cancelView);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && S.view) cancelView();
  });

  window.chatopsEmulator = S; // for debugging from the console
  connect();
})();
