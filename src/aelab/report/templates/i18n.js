/* The run report in English or Japanese (report/i18n.py): the browser's language by default,
   the button switches and the choice is remembered. Every [data-t] element gets the string of its
   key, its {name} placeholders filled from data-a. Without scripts the page stays in English. */
(function () {
  "use strict";
  const S = JSON.parse(document.getElementById("aelab-i18n").textContent);
  const button = document.getElementById("lang");
  function fill(s, args) { return s.replace(/\{(\w+)\}/g, (m, k) => (k in args ? String(args[k]) : m)); }
  function apply(lang) {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-t]").forEach(e => {
      const s = S[lang][e.dataset.t];
      if (s !== undefined) e.textContent = fill(s, e.dataset.a ? JSON.parse(e.dataset.a) : {});
    });
    button.dataset.lang = lang;
  }
  let lang = null;
  try { lang = localStorage.getItem("aelab-lang"); } catch (e) { /* file:// without storage */ }
  if (!(lang in S)) {
    const first = (navigator.languages || [navigator.language || "en"]).find(l => /^(en|ja)\b/i.test(l)) || "en";
    lang = /^ja/i.test(first) ? "ja" : "en";
  }
  apply(lang);
  button.addEventListener("click", () => {
    lang = lang === "ja" ? "en" : "ja";
    try { localStorage.setItem("aelab-lang", lang); } catch (e) { /* file:// without storage */ }
    apply(lang);
  });
})();
