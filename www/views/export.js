// Downloads from the page: everything is made here, in memory; nothing is uploaded.

/** Saves `data` (Blob, bytes or text) under `name` through a temporary object URL. */
export function download(data, name, type = 'application/octet-stream') {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** An SVG string rendered to a PNG Blob at `scale`× its size. */
export async function svgToPng(svgText, scale = 2) {
  const url = URL.createObjectURL(new Blob([svgText], { type: 'image/svg+xml' }));
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    const canvas = Object.assign(document.createElement('canvas'), { width: img.width * scale, height: img.height * scale });
    const ctx = canvas.getContext('2d');
    ctx.scale(scale, scale);
    ctx.drawImage(img, 0, 0);
    const png = await new Promise((ok) => canvas.toBlob(ok, 'image/png'));
    if (!png) throw new Error(`the plot is too large for a PNG (${canvas.width} × ${canvas.height} pixels): export it as SVG`);
    return png;
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** PNG Blob of ImageData (what regl-scatterplot's export() returns). */
export async function imageDataToPng(image) {
  const canvas = Object.assign(document.createElement('canvas'), { width: image.width, height: image.height });
  canvas.getContext('2d').putImageData(image, 0, 0);
  return new Promise((ok) => canvas.toBlob(ok, 'image/png'));
}
