// Render the math that pymdownx.arithmatex (generic mode) leaves in the page as
// <span class="arithmatex">\( ... \)</span> and <div class="arithmatex">\[ ... \]</div>.
// KaTeX and its auto-render extension are local files that site/scripts/fetch_katex.py
// puts in javascripts/katex/: nothing is fetched from another server. Material for MkDocs
// swaps pages without a full reload (instant navigation), so render on every emission of
// its document$ observable. If the KaTeX files are absent, the page keeps the TeX source.
document$.subscribe(({ body }) => {
  if (typeof renderMathInElement !== "function") {
    return;
  }
  body.querySelectorAll(".arithmatex").forEach((element) => {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  });
});
