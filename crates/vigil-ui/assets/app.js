// Vigil UI enhancements. Every page works without this file; it adds the theme switch, keyboard
// navigation (j/k, Enter, Esc, /), span selection without a reload, auto-refresh and auto-submit.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("vigil-theme"); } catch (e) { /* private mode */ }
  var dark = saved ? saved === "dark" : window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  root.setAttribute("data-theme", dark ? "dark" : "light");

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-list] [data-href]"));
  }
  function current() {
    return document.querySelector("[data-list] [data-href].selected");
  }
  function select(row) {
    var old = current();
    if (old) old.classList.remove("selected");
    if (!row) return;
    row.classList.add("selected");
    row.scrollIntoView({ block: "nearest" });
    if (row.classList.contains("span-row")) showSpan(row, false);
  }
  function open(row) {
    if (row) window.location.href = row.getAttribute("data-href");
  }

  // Trace page: load a span's detail panel in place and keep the URL a deep link to it.
  function showSpan(row, push) {
    var href = row.getAttribute("data-href");
    var panel = document.getElementById("detail");
    if (!panel) { window.location.href = href; return; }
    var url = href + (href.indexOf("?") >= 0 ? "&" : "?") + "partial=detail";
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        panel.innerHTML = html;
        panel.scrollTop = 0;
        if (push) history.pushState(null, "", href); else history.replaceState(null, "", href);
      })
      .catch(function () { window.location.href = href; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) toggle.addEventListener("click", function () {
      var next = root.getAttribute("data-theme") === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("vigil-theme", next); } catch (e) { /* ignore */ }
    });

    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { if (s.form) s.form.submit(); });
    });
    document.querySelectorAll("select[data-range]").forEach(function (s) {
      s.addEventListener("change", function () {
        var custom = s.parentNode.querySelector(".custom");
        if (s.value === "custom") { if (custom) custom.hidden = false; }
        else if (s.form) s.form.submit();
      });
    });

    // Rows open on click (links inside them keep their own behaviour).
    document.addEventListener("click", function (e) {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
      var a = e.target.closest("a");
      var row = e.target.closest("[data-list] [data-href]");
      if (!row) return;
      if (row.classList.contains("span-row") && (!a || a.classList.contains("span-link"))) {
        e.preventDefault();
        var old = current();
        if (old) old.classList.remove("selected");
        row.classList.add("selected");
        showSpan(row, true);
        return;
      }
      if (!a && !e.target.closest("input,select,button,summary")) open(row);
    });

    // Auto-refresh: reload the first page every 10 s while the box is ticked (kept in the URL).
    var auto = document.querySelector("[data-autorefresh]");
    if (auto) {
      auto.addEventListener("change", function () { if (auto.form) auto.form.submit(); });
      if (auto.checked && !/[?&]cursor=/.test(location.search)) {
        setTimeout(function () { if (!document.hidden) location.reload(); }, 10000);
        document.addEventListener("visibilitychange", function () { if (!document.hidden) location.reload(); });
      }
    }

    var pending = "";
    document.addEventListener("keydown", function (e) {
      var t = e.target;
      if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
        if (e.key === "Escape") t.blur();
        return;
      }
      if (e.metaKey || e.ctrlKey || e.altKey) return;
      var list = rows();
      var at = list.indexOf(current());
      if (pending === "g") {
        pending = "";
        var go = { d: "/ui/dashboard", t: "/ui/traces", s: "/ui/sessions", m: "/ui/models", a: "/ui/approvals", l: "/ui/annotate", q: "/ui/quality" }[e.key];
        if (go) { window.location.href = go; return; }
      }
      // Annotation: y good, n bad, f failure mode, c comment, s skip, Enter save and next.
      var ann = document.querySelector("form[data-annotate]");
      if (ann) {
        var pick = function (v) {
          var r = ann.querySelector("input[name=label][value=" + v + "]");
          if (r) r.checked = true;
        };
        var field = function (n) { var f = ann.querySelector("[name=" + n + "]"); if (f) { f.focus(); e.preventDefault(); } };
        switch (e.key) {
          case "y": pick("good"); return;
          case "n": pick("bad"); field("failure_mode"); return;
          case "f": field("failure_mode"); return;
          case "c": field("comment"); return;
          case "s": var skip = document.querySelector("[data-skip]"); if (skip) window.location.href = skip.getAttribute("href"); return;
          case "Enter": ann.requestSubmit ? ann.requestSubmit() : ann.submit(); e.preventDefault(); return;
        }
      }
      switch (e.key) {
        case "j": select(list[Math.min(at + 1, list.length - 1)] || list[0]); e.preventDefault(); break;
        case "k": select(list[Math.max(at - 1, 0)] || list[0]); e.preventDefault(); break;
        case "Enter":
          var row = current();
          if (row && !row.classList.contains("span-row")) { open(row); e.preventDefault(); }
          break;
        case "Escape":
          var back = document.querySelector("[data-back]");
          if (back) window.location.href = back.getAttribute("href");
          break;
        case "/":
          var search = document.querySelector("[data-search]");
          if (search) { search.focus(); search.select(); e.preventDefault(); }
          break;
        case "g": pending = "g"; break;
      }
    });

    // A deep-linked span starts selected and in view.
    var sel = document.querySelector("tr.span-row.selected");
    if (sel) sel.scrollIntoView({ block: "nearest" });
  });
})();
