// brainnet explorer: a small WebGL2 viewer of per-unit maps on both hemispheres (no third-party code).
// Data: {meta, buffers} as written by brainnet/explorer (buffers zlib-compressed; meta.buffers gives dtype/shape).
// Page API (tests, benchmarks): brainnetExplorer.instances[i] -> Viewer with ready (Promise), setMap(name),
// setSurface(name), setView(name), screenOf(unit) -> {x, y, visible}, unitAt(clientX, clientY), select(unit),
// hoverText(), detailText(), firstDrawMs.
var brainnetExplorer = (function () {
  "use strict";
  const TYPES = { uint8: Uint8Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
    float32: Float32Array, float64: Float64Array };
  const instances = [];

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }
  function fromBase64(s) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(s);
    const bin = atob(s), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  async function decode(meta, compressed) {
    const keys = Object.keys(meta.buffers), out = {};
    const raw = await Promise.all(keys.map((k) => inflate(compressed[k])));
    keys.forEach((k, i) => { out[k] = new TYPES[meta.buffers[k].dtype](raw[i]); });
    return out;
  }
  function el(tag, attrs, parent) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v);
    }
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(v) { return Number.isFinite(v) ? (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(4)) : "NaN"; }

  const VS = `#version 300 es
in vec3 pos; in vec3 nrm; in vec3 col;
uniform mat4 mvp; uniform mat3 rot; uniform float lit; uniform float idBase;
out vec3 vcol; out float shade; flat out float vid;
void main() { gl_Position = mvp * vec4(pos, 1.0); vec3 n = normalize(rot * nrm);
  shade = mix(1.0, 0.45 + 0.55 * abs(n.z), lit); vcol = col; vid = float(gl_VertexID) + idBase; }`;
  const FS = `#version 300 es
precision highp float; in vec3 vcol; in float shade; flat in float vid; out vec4 o;
void main() { o = vec4(vcol * shade, 1.0); }`;
  const FS_PICK = `#version 300 es
precision highp float; in vec3 vcol; in float shade; flat in float vid; out vec4 o;
void main() { float v = vid + 1.0; o = vec4(mod(v, 256.0), mod(floor(v / 256.0), 256.0), floor(v / 65536.0), 255.0) / 255.0; }`;

  function program(gl, vs, fs) {
    const p = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const s = gl.createShader(type);
      gl.shaderSource(s, src); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      gl.attachShader(p, s);
    }
    ["pos", "nrm", "col"].forEach((n, i) => gl.bindAttribLocation(p, i, n));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
    return p;
  }

  const VIEWS = { lateral: [Math.PI / 2, 0], medial: [-Math.PI / 2, 0], posterior: [0, 0], anterior: [Math.PI, 0],
    dorsal: [0, -Math.PI / 2], ventral: [Math.PI, Math.PI / 2] };

  class Viewer {
    constructor(root, meta, arrays) {
      this.meta = meta; this.a = arrays; this.nv = meta.n_vertices;
      this.mapIndex = 0; this.surface = 0; this.view = "lateral"; this.cam = { yaw: 0, pitch: 0, zoom: 0.92, px: 0, py: 0 };
      this.selected = -1; this.hovered = -1; this.pickDirty = true; this.outlines = !!meta.roi;
      this.gpu = {}; this.adj = null;
      const hemi = arrays[meta.unit_hemi], index = arrays[meta.unit_index];
      this.unitOf = [new Int32Array(this.nv[0]).fill(-1), new Int32Array(this.nv[1]).fill(-1)];
      this.voxels = [];
      for (let u = 0; u < meta.n_units; u++) {
        if (hemi[u] === 2) this.voxels.push(u); else this.unitOf[hemi[u]][index[u]] = u;
      }
      this.detailRow = new Map();
      const du = arrays[meta.details.units];
      for (let i = 0; i < du.length; i++) this.detailRow.set(du[i], i);
      this.buildDom(root);
      this.gl = this.canvas.getContext("webgl2", { antialias: true, preserveDrawingBuffer: true });
      if (!this.gl) throw new Error("WebGL2 is not available in this browser");
      const gl = this.gl;
      this.prog = program(gl, VS, FS); this.pickProg = program(gl, VS, FS_PICK);
      this.colorBuf = [gl.createBuffer(), gl.createBuffer()];
      this.setView(this.view, false);
      this.setMap(meta.maps[0].name, false);
      this.draw();
    }

    // ---------- DOM ----------
    buildDom(root) {
      root.innerHTML = "";
      const r = el("div", { cls: "bn-root" }, root), main = el("div", { cls: "bn-main" }, r);
      const bar = el("div", { cls: "bn-toolbar" }, main);
      el("span", { text: "map" }, bar);
      this.mapSelect = el("select", { "data-role": "map" }, bar);
      this.meta.maps.forEach((m) => el("option", { value: m.name, text: m.label }, this.mapSelect));
      this.mapSelect.onchange = () => this.setMap(this.mapSelect.value);
      this.surfButtons = this.meta.surfaces.map((s) => {
        const b = el("button", { text: s.name, "data-surface": s.name }, bar);
        b.onclick = () => this.setSurface(s.name); return b;
      });
      this.viewButtons = Object.keys(VIEWS).map((v) => {
        const b = el("button", { text: v, "data-view": v }, bar);
        b.onclick = () => this.setView(v); return b;
      });
      if (this.meta.roi) {
        const lab = el("label", {}, bar), cb = el("input", { type: "checkbox" }, lab);
        cb.checked = true; lab.appendChild(document.createTextNode(" ROIs"));
        cb.onchange = () => { this.outlines = cb.checked; this.recolor(); this.draw(); };
      }
      const stage = el("div", { cls: "bn-stage" }, main);
      const W = 780, H = 460, dpr = Math.min(window.devicePixelRatio || 1, 2);
      this.canvas = el("canvas", { width: W * dpr, height: H * dpr, style: `width:${W}px;height:${H}px` }, stage);
      this.overlay = el("canvas", { cls: "bn-overlay", width: W * dpr, height: H * dpr,
        style: `width:${W}px;height:${H}px` }, stage);
      this.dpr = dpr;
      this.legend = el("div", { cls: "bn-legend" }, main);
      const side = el("div", { cls: "bn-side" }, r);
      el("h4", { text: this.meta.title }, side);
      // hover: a tooltip by the mouse (the side panel holds the clicked unit alone, no repeated table)
      this.hoverBox = el("div", { cls: "bn-hover", "data-role": "hover", style: "display:none" }, stage);
      this.detailBox = el("div", { cls: "bn-detail", "data-role": "detail" }, side);
      el("div", { cls: "bn-note", text: "hover a vertex for its values; click it for details" }, this.detailBox);
      if (this.voxels.length) {
        el("h4", { text: `voxel units (${this.voxels.length}, no surface position)` }, side);
        this.voxelSelect = el("select", { size: Math.min(8, this.voxels.length), "data-role": "voxels" }, side);
        const roi = this.meta.roi, name = (u) => (roi && this.a[roi.codes][u] ? ` \u00b7 ${roi.names[this.a[roi.codes][u]]}` : "");
        this.voxels.forEach((u) => el("option", { value: u, text: `unit ${u}${name(u)}` }, this.voxelSelect));
        this.voxelSelect.onchange = () => this.select(Number(this.voxelSelect.value));
      }
      this.bindMouse();
    }

    bindMouse() {
      let drag = null, moved = false;
      this.canvas.addEventListener("mousedown", (e) => { drag = [e.clientX, e.clientY]; moved = false; });
      window.addEventListener("mouseup", () => { drag = null; });
      this.canvas.addEventListener("mousemove", (e) => {
        if (drag) {
          const dx = e.clientX - drag[0], dy = e.clientY - drag[1];
          if (Math.abs(dx) + Math.abs(dy) > 2) moved = true;
          if (moved) {
            drag = [e.clientX, e.clientY];
            if (this.surf().flat) { this.cam.px += dx / 200; this.cam.py -= dy / 200; }
            else { this.cam.yaw += dx * 0.01; this.cam.pitch = Math.max(-1.6, Math.min(1.6, this.cam.pitch + dy * 0.01)); }
            this.draw(); return;
          }
        }
        const u = this.unitAt(e.clientX, e.clientY);
        if (u !== this.hovered) { this.hovered = u; this.showHover(u); }
        this.placeHover(e.clientX, e.clientY);
      });
      this.canvas.addEventListener("mouseleave", () => { this.hovered = -1; this.showHover(-1); });
      this.canvas.addEventListener("click", (e) => { if (!moved) { const u = this.unitAt(e.clientX, e.clientY); if (u >= 0) this.select(u); } });
      this.canvas.addEventListener("wheel", (e) => {
        e.preventDefault(); this.cam.zoom *= Math.exp(-e.deltaY * 0.001); this.draw();
      }, { passive: false });
    }

    // ---------- geometry ----------
    surf() { return this.meta.surfaces[this.surface]; }
    hemiGpu(h) {
      const s = this.surf(), key = s.name + h;
      if (this.gpu[key]) return this.gpu[key];
      const gl = this.gl, hm = s.hemis[h], q = this.a[hm.coords], n = this.nv[h], dims = s.flat ? 2 : 3;
      const pos = new Float32Array(n * 3);
      for (let i = 0; i < n; i++) for (let d = 0; d < dims; d++) pos[i * 3 + d] = s.lo[d] + q[i * dims + d] * s.step[d];
      const fkey = hm.faces + ":idx";
      if (!this.gpu[fkey]) {
        const delta = this.a[hm.faces], idx = new Uint32Array(delta.length);
        let acc = 0;
        for (let i = 0; i < delta.length; i++) { acc += delta[i]; idx[i] = acc; }
        const buf = gl.createBuffer();
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, buf); gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx, gl.STATIC_DRAW);
        this.gpu[fkey] = { buf, idx };
      }
      const idx = this.gpu[fkey].idx, nrm = new Float32Array(n * 3), used = new Uint8Array(n);
      if (s.flat) { for (let i = 0; i < n; i++) nrm[i * 3 + 2] = 1; }
      for (let f = 0; f < idx.length; f += 3) {
        const a = idx[f] * 3, b = idx[f + 1] * 3, c = idx[f + 2] * 3;
        used[idx[f]] = used[idx[f + 1]] = used[idx[f + 2]] = 1;
        if (s.flat) continue;
        const ux = pos[b] - pos[a], uy = pos[b + 1] - pos[a + 1], uz = pos[b + 2] - pos[a + 2];
        const vx = pos[c] - pos[a], vy = pos[c + 1] - pos[a + 1], vz = pos[c + 2] - pos[a + 2];
        const nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
        for (const k of [a, b, c]) { nrm[k] += nx; nrm[k + 1] += ny; nrm[k + 2] += nz; }
      }
      const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
      for (let i = 0; i < n; i++) if (used[i]) for (let d = 0; d < 3; d++) {
        lo[d] = Math.min(lo[d], pos[i * 3 + d]); hi[d] = Math.max(hi[d], pos[i * 3 + d]);
      }
      const centre = lo.map((l, d) => (l + hi[d]) / 2);
      let radius = 0;
      for (let i = 0; i < n; i++) if (used[i]) {
        const dx = pos[i * 3] - centre[0], dy = pos[i * 3 + 1] - centre[1], dz = pos[i * 3 + 2] - centre[2];
        radius = Math.max(radius, s.flat ? Math.max(Math.abs(dx), Math.abs(dy)) : Math.hypot(dx, dy, dz));
      }
      const g = { pos, used, centre, radius, nFaces: idx.length, ibuf: this.gpu[fkey].buf, vbuf: gl.createBuffer(), nbuf: gl.createBuffer() };
      gl.bindBuffer(gl.ARRAY_BUFFER, g.vbuf); gl.bufferData(gl.ARRAY_BUFFER, pos, gl.STATIC_DRAW);
      gl.bindBuffer(gl.ARRAY_BUFFER, g.nbuf); gl.bufferData(gl.ARRAY_BUFFER, nrm, gl.STATIC_DRAW);
      this.gpu[key] = g;
      return g;
    }

    // model-view-projection of hemisphere h: columns of a 4x4 (column-major) and the 3x3 rotation
    matrices(h) {
      const s = this.surf(), g0 = this.hemiGpu(0), g1 = this.hemiGpu(1), g = h ? g1 : g0;
      const r = Math.max(g0.radius, g1.radius) || 1, W = this.canvas.width / 2, H = this.canvas.height;
      const m = Math.min(W, H), sx = this.cam.zoom / r * m / W, sy = this.cam.zoom / r * m / H;
      let R;
      if (s.flat) R = [1, 0, 0, 0, 1, 0, 0, 0, 1];
      else {
        const yaw = h ? -this.cam.yaw : this.cam.yaw, p = this.cam.pitch;
        const cy = Math.cos(yaw), sy_ = Math.sin(yaw), cp = Math.cos(p), sp = Math.sin(p);
        // yaw about z, then screen X = x, Y = z, depth = y, then pitch about screen X
        const rz = [[cy, -sy_, 0], [sy_, cy, 0], [0, 0, 1]];
        const B = [[1, 0, 0], [0, 0, 1], [0, 1, 0]], P = [[1, 0, 0], [0, cp, -sp], [0, sp, cp]];
        const mul = (A, C) => A.map((row) => [0, 1, 2].map((j) => row[0] * C[0][j] + row[1] * C[1][j] + row[2] * C[2][j]));
        const M = mul(P, mul(B, rz));
        R = [M[0][0], M[1][0], M[2][0], M[0][1], M[1][1], M[2][1], M[0][2], M[1][2], M[2][2]]; // column-major
      }
      const c = g.centre, S = [sx, sy, 0.9 / r];
      const mvp = new Float32Array(16);
      for (let j = 0; j < 3; j++) for (let i = 0; i < 3; i++) mvp[j * 4 + i] = R[j * 3 + i] * S[i];
      for (let i = 0; i < 3; i++) mvp[12 + i] = -(R[i] * c[0] + R[3 + i] * c[1] + R[6 + i] * c[2]) * S[i];
      mvp[12] += this.cam.px; mvp[13] += this.cam.py; mvp[15] = 1;
      return { mvp, rot: new Float32Array(R) };
    }

    // ---------- colours ----------
    recolor() {
      const m = this.meta.maps[this.mapIndex], a = this.a, vals = a[m.values], C = m.values ? this.meta.buffers[m.values].shape[1] : 1;
      const nanCode = vals instanceof Uint8Array ? 255 : 65535;
      const hemi = a[this.meta.unit_hemi], index = a[this.meta.unit_index], rgbBuf = m.rgb ? a[m.rgb] : null;
      for (let h = 0; h < 2; h++) {
        const bg = a["background." + (h ? "rh" : "lh")], n = this.nv[h], col = new Uint8Array(n * 3);
        for (let i = 0; i < n; i++) col[i * 3] = col[i * 3 + 1] = col[i * 3 + 2] = bg[i];
        for (let u = 0; u < hemi.length; u++) {
          if (hemi[u] !== h) continue;
          const v = index[u] * 3, code = vals[u * C];
          let rgb = null;
          if (rgbBuf) { if (code !== nanCode) rgb = [rgbBuf[u * 3], rgbBuf[u * 3 + 1], rgbBuf[u * 3 + 2]]; }
          else if (m.kind === "categorical") { if (code !== m.none) rgb = m.colors[code]; }
          else if (code !== nanCode) {
            const x = m.lo[0] + code * m.step[0];
            if (!(m.threshold && Math.abs(x) < m.threshold)) {
              const t = Math.max(0, Math.min(1, (x - m.vmin) / (m.vmax - m.vmin)));
              rgb = m.lut[Math.round(t * (m.lut.length - 1))];
            }
          }
          if (rgb) { col[v] = rgb[0]; col[v + 1] = rgb[1]; col[v + 2] = rgb[2]; }
        }
        if (this.outlines) {
          const border = a["roi_border." + (h ? "rh" : "lh")];
          for (let i = 0; i < n; i++) if (border[i]) col[i * 3] = col[i * 3 + 1] = col[i * 3 + 2] = 25;
        }
        this.gl.bindBuffer(this.gl.ARRAY_BUFFER, this.colorBuf[h]);
        this.gl.bufferData(this.gl.ARRAY_BUFFER, col, this.gl.STATIC_DRAW);
      }
    }

    // ---------- drawing ----------
    pass(prog, fb) {
      const gl = this.gl, W = this.canvas.width, H = this.canvas.height;
      gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
      gl.viewport(0, 0, W, H);
      if (fb) gl.clearColor(0, 0, 0, 0); else gl.clearColor(1, 1, 1, 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.enable(gl.DEPTH_TEST); gl.depthFunc(gl.LEQUAL);
      gl.useProgram(prog);
      for (let h = 0; h < 2; h++) {
        const g = this.hemiGpu(h), { mvp, rot } = this.matrices(h);
        gl.viewport(h * W / 2, 0, W / 2, H);
        gl.uniformMatrix4fv(gl.getUniformLocation(prog, "mvp"), false, mvp);
        gl.uniformMatrix3fv(gl.getUniformLocation(prog, "rot"), false, rot);
        gl.uniform1f(gl.getUniformLocation(prog, "lit"), this.surf().flat ? 0 : 1);
        gl.uniform1f(gl.getUniformLocation(prog, "idBase"), h ? this.nv[0] : 0);
        for (const [i, buf, size, type, norm] of [[0, g.vbuf, 3, gl.FLOAT, false], [1, g.nbuf, 3, gl.FLOAT, false],
          [2, this.colorBuf[h], 3, gl.UNSIGNED_BYTE, true]]) {
          gl.bindBuffer(gl.ARRAY_BUFFER, buf); gl.enableVertexAttribArray(i);
          gl.vertexAttribPointer(i, size, type, norm, 0, 0);
        }
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, g.ibuf);
        gl.drawElements(gl.TRIANGLES, g.nFaces, gl.UNSIGNED_INT, 0);
      }
      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    }
    draw() {
      this.pass(this.prog, null); this.pickDirty = true;
      // labels need the pick pass: drawn just after the frame, once per burst of redraws
      if (!this.overlayPending) { this.overlayPending = true; setTimeout(() => { this.overlayPending = false; this.drawOverlay(); }, 0); }
    }

    pickBuffer() {
      if (!this.pickDirty) return this.pickPixels;
      const gl = this.gl, W = this.canvas.width, H = this.canvas.height;
      if (!this.fb || this.fbSize !== W * H) {
        this.fb = gl.createFramebuffer(); gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb);
        const tex = gl.createTexture(); gl.bindTexture(gl.TEXTURE_2D, tex);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, W, H, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
        gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
        const depth = gl.createRenderbuffer(); gl.bindRenderbuffer(gl.RENDERBUFFER, depth);
        gl.renderbufferStorage(gl.RENDERBUFFER, gl.DEPTH_COMPONENT24, W, H);
        gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.DEPTH_ATTACHMENT, gl.RENDERBUFFER, depth);
        this.fbSize = W * H; this.pickPixels = new Uint8Array(W * H * 4);
      }
      this.pass(this.pickProg, this.fb);
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.fb);
      gl.readPixels(0, 0, W, H, gl.RGBA, gl.UNSIGNED_BYTE, this.pickPixels);
      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      this.pickDirty = false;
      return this.pickPixels;
    }

    // screen position (canvas pixels, y down) of mesh vertex v of hemisphere h
    project(h, v) {
      const g = this.hemiGpu(h), { mvp } = this.matrices(h), p = g.pos, W = this.canvas.width / 2, H = this.canvas.height;
      const x = mvp[0] * p[v * 3] + mvp[4] * p[v * 3 + 1] + mvp[8] * p[v * 3 + 2] + mvp[12];
      const y = mvp[1] * p[v * 3] + mvp[5] * p[v * 3 + 1] + mvp[9] * p[v * 3 + 2] + mvp[13];
      return [h * W + (x + 1) / 2 * W, (1 - y) / 2 * H];
    }
    neighbours(h, v) {
      if (!this.adj) this.adj = [0, 1].map((k) => this.buildAdjacency(k));
      const { start, list } = this.adj[h];
      return list.subarray(start[v], start[v + 1]);
    }
    buildAdjacency(h) {
      const idx = this.gpu[this.meta.surfaces[0].hemis[h].faces + ":idx"].idx, n = this.nv[h];
      const count = new Int32Array(n + 1);
      for (let f = 0; f < idx.length; f++) count[idx[f] + 1] += 2;
      for (let i = 0; i < n; i++) count[i + 1] += count[i];
      const list = new Int32Array(count[n]), fill = count.slice(0, n);
      for (let f = 0; f < idx.length; f += 3) for (let k = 0; k < 3; k++) {
        const a = idx[f + k]; list[fill[a]++] = idx[f + (k + 1) % 3]; list[fill[a]++] = idx[f + (k + 2) % 3];
      }
      return { start: count, list };
    }
    // [hemi, mesh vertex] under canvas pixel (px, py), or null
    vertexAtPixel(px, py) {
      const W = this.canvas.width, H = this.canvas.height;
      px = Math.round(px); py = Math.round(py);
      if (px < 0 || py < 0 || px >= W || py >= H) return null;
      this.hemiGpu(0); this.hemiGpu(1); this.surface0Faces();
      const buf = this.pickBuffer(), o = ((H - 1 - py) * W + px) * 4;
      const id = buf[o] + buf[o + 1] * 256 + buf[o + 2] * 65536 - 1;
      if (id < 0) return null;
      const h = id >= this.nv[0] ? 1 : 0, v0 = id - (h ? this.nv[0] : 0);
      let best = v0, bestD = Infinity;
      for (const v of [v0, ...this.neighbours(h, v0)]) {
        if (!this.hemiGpu(h).used[v]) continue;
        const [x, y] = this.project(h, v), d = (x - px) ** 2 + (y - py) ** 2;
        if (d < bestD) { bestD = d; best = v; }
      }
      return [h, best];
    }
    surface0Faces() { // the adjacency uses the first surface's faces, decoded on its first use
      const s0 = this.surface; if (s0 !== 0) { this.surface = 0; this.hemiGpu(0); this.hemiGpu(1); this.surface = s0; }
    }
    unitAt(clientX, clientY) {
      const r = this.canvas.getBoundingClientRect();
      const hit = this.vertexAtPixel((clientX - r.left) * this.dpr, (clientY - r.top) * this.dpr);
      return hit ? this.unitOf[hit[0]][hit[1]] : -1;
    }
    screenOf(unit) {
      const h = this.a[this.meta.unit_hemi][unit], v = this.a[this.meta.unit_index][unit];
      if (h === 2 || !this.hemiGpu(h).used[v]) return null;
      const [x, y] = this.project(h, v), r = this.canvas.getBoundingClientRect(), hit = this.vertexAtPixel(x, y);
      return { x: r.left + x / this.dpr, y: r.top + y / this.dpr, visible: !!hit && hit[0] === h && hit[1] === v };
    }

    drawOverlay() {
      const ctx = this.overlay.getContext("2d"), d = this.dpr;
      ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
      ctx.font = `${11 * d}px system-ui, sans-serif`; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      if (this.outlines && this.meta.roi_anchors) {
        const placed = []; // label boxes drawn so far: a name overlapping one of them is left out
        for (const an of this.meta.roi_anchors) {
          if (!this.hemiGpu(an.hemi).used[an.vertex]) continue;
          const [x, y] = this.project(an.hemi, an.vertex), hit = this.vertexAtPixel(x, y);
          if (!hit || hit[0] !== an.hemi) continue;
          const q = this.hemiGpu(an.hemi).pos, a3 = an.vertex * 3, b3 = hit[1] * 3;
          if (Math.hypot(q[a3] - q[b3], q[a3 + 1] - q[b3 + 1], q[a3 + 2] - q[b3 + 2]) > 0.08 * this.hemiGpu(an.hemi).radius) continue;
          const w = ctx.measureText(an.name).width / 2 + 2 * d, hh = 7 * d;
          if (placed.some(([px, py, pw]) => Math.abs(px - x) < pw + w && Math.abs(py - y) < 2 * hh)) continue;
          placed.push([x, y, w]);
          ctx.lineWidth = 3 * d; ctx.strokeStyle = "rgba(255,255,255,0.85)"; ctx.strokeText(an.name, x, y);
          ctx.fillStyle = "#111"; ctx.fillText(an.name, x, y);
        }
      }
      const sel = this.selected >= 0 ? this.screenOf(this.selected) : null;
      if (sel) {
        const r = this.canvas.getBoundingClientRect(), x = (sel.x - r.left) * d, y = (sel.y - r.top) * d;
        ctx.lineWidth = 2 * d; ctx.strokeStyle = "#00c8ff"; ctx.beginPath(); ctx.arc(x, y, 6 * d, 0, 2 * Math.PI); ctx.stroke();
      }
    }

    // ---------- controls ----------
    setMap(name, redraw = true) {
      const i = this.meta.maps.findIndex((m) => m.name === name);
      if (i < 0) throw new Error("no map " + name);
      this.mapIndex = i; this.mapSelect.value = name;
      this.recolor(); this.drawLegend();
      if (redraw) this.draw();
    }
    setSurface(name, redraw = true) {
      const i = this.meta.surfaces.findIndex((s) => s.name === name);
      if (i < 0) throw new Error("no surface " + name);
      this.surface = i; this.cam.px = this.cam.py = 0; this.cam.zoom = 0.92;
      this.surfButtons.forEach((b, k) => b.classList.toggle("bn-on", k === i));
      this.viewButtons.forEach((b) => { b.disabled = !!this.surf().flat; });
      if (redraw) this.draw();
    }
    setView(name, redraw = true) {
      [this.cam.yaw, this.cam.pitch] = VIEWS[name]; this.view = name;
      this.viewButtons.forEach((b) => b.classList.toggle("bn-on", b.dataset.view === name));
      this.setSurface(this.surf().name, redraw);
    }

    // ---------- legend ----------
    drawLegend() {
      const m = this.meta.maps[this.mapIndex], L = this.legend;
      L.innerHTML = "";
      const box = el("div", {}, L);
      el("div", { text: m.label }, box);
      if (m.kind === "scalar") {
        const c = el("canvas", { width: 256, height: 14 }, box), ctx = c.getContext("2d");
        m.lut.forEach((rgb, i) => { ctx.fillStyle = `rgb(${rgb})`; ctx.fillRect(i * 256 / m.lut.length, 0, 256 / m.lut.length + 1, 14); });
        const t = el("div", { style: "display:flex;justify-content:space-between;width:256px" }, box);
        el("span", { text: fmt(m.vmin) }, t); el("span", { text: fmt((m.vmin + m.vmax) / 2) }, t); el("span", { text: fmt(m.vmax) }, t);
      } else if (m.kind === "categorical") {
        const t = el("div", { style: "max-width:760px" }, box);
        m.present.slice(0, 60).forEach((code) => {
          const s = el("span", { style: "margin-right:8px;white-space:nowrap" }, t);
          el("span", { cls: "bn-swatch", style: `background:rgb(${m.colors[code]})` }, s);
          s.appendChild(document.createTextNode(m.names[code]));
        });
      } else if (m.kind === "layers") {
        const row = el("div", { style: "display:flex;align-items:center;gap:4px" }, box);
        el("span", { text: "entropy 0 \u2193 1", style: "writing-mode:vertical-rl;font-size:10px" }, row);
        el("img", { src: m.legend, width: 160, height: 56 }, row);
        el("div", { text: `preferred layer: ${m.layer_names[0]} \u2192 ${m.layer_names[m.layer_names.length - 1]}`, cls: "bn-note" }, box);
      } else if (m.kind === "space") {
        el("img", { src: m.legend, width: 64, height: 64 }, box);
        el("div", { text: "image position: x \u2192, y \u2193", cls: "bn-note" }, box);
      }
    }

    // ---------- values ----------
    values(m, u) { // dequantised values [C] of unit u in map m (NaN code -> NaN)
      const vals = this.a[m.values], C = this.meta.buffers[m.values].shape[1], nan = vals instanceof Uint8Array ? 255 : 65535;
      const out = [];
      for (let c = 0; c < C; c++) { const code = vals[u * C + c]; out.push(code === nan && m.kind !== "categorical" ? NaN : m.lo[c] + code * m.step[c]); }
      return out;
    }
    describe(m, v) {
      if (m.kind === "categorical") return m.names[v[0]] ?? String(v[0]);
      if (m.kind === "layers") { const k = v.indexOf(Math.max(...v)); return `${m.layer_names[k]} (w ${fmt(v[k])})`; }
      if (m.kind === "space") return `(${fmt(v[0])}, ${fmt(v[1])})`;
      return fmt(v[0]);
    }
    unitRows(u) {
      const h = this.a[this.meta.unit_hemi][u], rows = [["unit", String(u), { "data-unit": u }]];
      rows.push(["where", h === 2 ? "voxel (no surface position)" : `${h ? "rh" : "lh"} vertex ${this.a[this.meta.unit_index][u]}`]);
      if (this.meta.roi) { const c = this.a[this.meta.roi.codes][u]; rows.push(["ROI", c ? this.meta.roi.names[c] : "none"]); }
      for (const m of this.meta.maps) {
        const v = this.values(m, u);
        rows.push([m.label, this.describe(m, v), { "data-map": m.name, "data-values": JSON.stringify(v) }]);
      }
      return rows;
    }
    table(parent, rows) {
      const t = el("table", {}, parent);
      for (const [k, v, attrs] of rows) { const tr = el("tr", attrs || {}, t); el("td", { text: k }, tr); el("td", { text: v }, tr); }
    }
    showHover(u) {
      this.hoverBox.innerHTML = ""; this.hoverBox.style.display = u < 0 ? "none" : "block";
      if (u >= 0) this.table(this.hoverBox, this.unitRows(u));
    }
    placeHover(cx, cy) { // the tooltip beside the mouse, inside the stage
      const r = this.canvas.getBoundingClientRect(), b = this.hoverBox, w = b.offsetWidth, h = b.offsetHeight;
      let x = cx - r.left + 14, y = cy - r.top + 14;
      if (x + w > r.width) x = cx - r.left - 14 - w;
      if (y + h > r.height) y = Math.max(0, r.height - h);
      b.style.left = `${Math.max(0, x)}px`; b.style.top = `${y}px`;
    }
    hoverText() { return this.hoverBox.textContent; }
    detailText() { return this.detailBox.textContent; }

    // ---------- click panel ----------
    select(u) {
      this.selected = u; const D = this.detailBox, det = this.meta.details; D.innerHTML = "";
      this.table(D, this.unitRows(u));
      const layers = this.meta.maps.find((m) => m.kind === "layers"), space = this.meta.maps.find((m) => m.kind === "space");
      if (layers) { el("h4", { text: "layer weights" }, D); this.bars(el("canvas", { width: 300, height: 110 }, D), this.values(layers, u), layers.layer_names); }
      if (space) this.rfPanel(el("h4", { text: "receptive field position" }, D) && el("canvas", { width: 140, height: 140 }, D), this.values(space, u), det.image);
      const row = this.detailRow.get(u);
      const missing = () => el("div", { cls: "bn-note", text: "not stored for this unit (only the best units by score)" }, D);
      if (det.lag) {
        el("h4", { text: "lag profile (r, CI)" }, D);
        const K = det.lag.lags.length, q = this.a[det.lag.codes];
        if (row === undefined || q.subarray(row * 3 * K, (row * 3 + 1) * K).every((c) => c === 65535)) missing();
        else this.lagPanel(el("canvas", { width: 300, height: 120, "data-role": "lag" }, D), row, det.lag);
      }
      if (det.scatter) {
        el("h4", { text: "held-out: predicted vs measured" }, D);
        const N = this.meta.buffers[det.scatter.predicted.codes].shape[1], q = this.a[det.scatter.predicted.codes];
        if (row === undefined || q.subarray(row * N, (row + 1) * N).every((c) => c === 255)) missing();
        else this.scatterPanel(el("canvas", { width: 240, height: 200, "data-role": "scatter" }, D), row, det.scatter);
      }
      this.drawOverlay();
    }
    axes(ctx, W, H) { ctx.clearRect(0, 0, W, H); ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.strokeRect(28.5, 4.5, W - 33, H - 22); ctx.fillStyle = "#444"; ctx.font = "10px system-ui, sans-serif"; }
    bars(c, w, names) {
      const ctx = c.getContext("2d"), W = c.width, H = c.height, n = w.length, bw = (W - 34) / n, top = Math.max(...w) || 1;
      this.axes(ctx, W, H);
      w.forEach((x, i) => {
        const t = n > 1 ? i / (n - 1) : 0; ctx.fillStyle = `rgb(${Math.round(59 + 121 * t)},${Math.round(76 - 72 * t * t + 60 * t)},${Math.round(192 - 154 * t)})`;
        const bh = (H - 24) * x / top; ctx.fillRect(30 + i * bw, H - 18 - bh, bw - 2, bh);
        if (n <= 12 || i % Math.ceil(n / 12) === 0) { ctx.fillStyle = "#444"; ctx.textAlign = "center"; ctx.fillText(names[i], 30 + (i + 0.5) * bw, H - 6); }
      });
      ctx.textAlign = "right"; ctx.fillText(top.toFixed(2), 26, 12); ctx.fillText("0", 26, H - 18);
    }
    rfPanel(c, xy, image) {
      const ctx = c.getContext("2d"), W = c.width, H = c.height;
      const mark = () => {
        const x = (xy[0] + 1) / 2 * W, y = (xy[1] + 1) / 2 * H;
        ctx.strokeStyle = "#fff"; ctx.lineWidth = 3; ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke();
        ctx.strokeStyle = "#e00"; ctx.lineWidth = 1.5; ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke();
      };
      ctx.fillStyle = "#eee"; ctx.fillRect(0, 0, W, H); mark();
      if (image) { const img = new Image(); img.onload = () => { ctx.drawImage(img, 0, 0, W, H); mark(); }; img.src = image; }
    }
    lagPanel(c, row, lag) {
      const ctx = c.getContext("2d"), W = c.width, H = c.height, K = lag.lags.length, q = this.a[lag.codes];
      const get = (j, k) => lag.lo + q[(row * 3 + j) * K + k] * lag.step;
      let lo = Infinity, hi = -Infinity;
      for (let k = 0; k < K; k++) { lo = Math.min(lo, get(1, k), 0); hi = Math.max(hi, get(2, k)); }
      if (hi <= lo) hi = lo + 1;
      const X = (k) => 30 + (W - 36) * (K > 1 ? k / (K - 1) : 0.5), Y = (v) => 6 + (H - 26) * (hi - v) / (hi - lo);
      this.axes(ctx, W, H);
      ctx.fillStyle = "rgba(31,119,180,0.25)"; ctx.beginPath();
      for (let k = 0; k < K; k++) ctx.lineTo(X(k), Y(get(2, k)));
      for (let k = K - 1; k >= 0; k--) ctx.lineTo(X(k), Y(get(1, k)));
      ctx.fill();
      ctx.strokeStyle = "#1f77b4"; ctx.lineWidth = 1.5; ctx.beginPath();
      for (let k = 0; k < K; k++) ctx.lineTo(X(k), Y(get(0, k)));
      ctx.stroke();
      ctx.strokeStyle = "#bbb"; ctx.beginPath(); ctx.moveTo(30, Y(0)); ctx.lineTo(W - 6, Y(0)); ctx.stroke();
      ctx.fillStyle = "#444"; ctx.textAlign = "right"; ctx.fillText(hi.toFixed(2), 26, 12); ctx.fillText(lo.toFixed(2), 26, H - 20);
      ctx.textAlign = "center"; ctx.fillText(`lag ${lag.lags[0]} \u2026 ${lag.lags[K - 1]}`, W / 2, H - 5);
    }
    scatterPanel(c, row, sc) {
      const ctx = c.getContext("2d"), W = c.width, H = c.height, N = this.meta.buffers[sc.predicted.codes].shape[1];
      const p = [], m = [];
      for (let i = 0; i < N; i++) {
        const a = this.a[sc.predicted.codes][row * N + i], b = this.a[sc.measured.codes][row * N + i];
        if (a !== 255 && b !== 255) { p.push(sc.predicted.lo + a * sc.predicted.step); m.push(sc.measured.lo + b * sc.measured.step); }
      }
      this.axes(ctx, W, H);
      const r = (v) => [Math.min(...v), Math.max(...v)], [plo, phi] = r(p), [mlo, mhi] = r(m);
      ctx.fillStyle = "rgba(0,0,0,0.55)";
      for (let i = 0; i < p.length; i++) {
        const x = 30 + (W - 36) * (p[i] - plo) / ((phi - plo) || 1), y = 6 + (H - 26) * (mhi - m[i]) / ((mhi - mlo) || 1);
        ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
      }
      const mean = (v) => v.reduce((s, x) => s + x, 0) / v.length, mp = mean(p), mm = mean(m);
      let sxy = 0, sxx = 0, syy = 0;
      for (let i = 0; i < p.length; i++) { sxy += (p[i] - mp) * (m[i] - mm); sxx += (p[i] - mp) ** 2; syy += (m[i] - mm) ** 2; }
      ctx.fillStyle = "#444"; ctx.textAlign = "center";
      ctx.fillText(`predicted \u2192  (r ${fmt(sxy / Math.sqrt(sxx * syy))}, n ${p.length})`, W / 2, H - 5);
      ctx.save(); ctx.translate(10, (H - 18) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText("measured \u2192", 0, 0); ctx.restore();
    }
  }

  async function start(root, meta, compressed) {
    const t0 = performance.now();
    try {
      const arrays = await decode(meta, compressed), v = new Viewer(root, meta, arrays);
      v.gl.finish();
      v.firstDrawMs = performance.now(); v.buildMs = v.firstDrawMs - t0;
      instances.push(v);
      return v;
    } catch (err) {
      root.innerHTML = ""; el("div", { cls: "bn-error", text: "brainnet explorer: " + err.message }, root);
      throw err;
    }
  }
  function mountPage(root, data) {
    const comp = {};
    for (const [k, s] of Object.entries(data.buffers)) comp[k] = fromBase64(s);
    const ready = start(root, data.meta, comp);
    brainnetExplorer.ready = ready;
    return ready;
  }
  function renderWidget({ model, el: root }) {
    const data = model.get("data"), comp = {};
    for (const [k, b] of Object.entries(data.buffers)) {
      comp[k] = b instanceof DataView ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(b.buffer || b);
    }
    start(root, data.meta, comp);
  }
  return { mountPage, renderWidget, instances, ready: null };
})();
