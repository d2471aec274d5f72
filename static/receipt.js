// The receipt page's one action: print it (or save it as a PDF from the print dialog).
document.getElementById("print-receipt").addEventListener("click", () => window.print());
