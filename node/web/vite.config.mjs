// Builds the patient portal and the auditor explorer into node/web/static, which the node
// serves under /web. The build output is committed (the node runs without Node.js) and a
// test rebuilds it to check it matches the sources.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const src = fileURLToPath(new URL("./src", import.meta.url));

export default defineConfig({
  root: src,
  base: "/web/",
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("./static", import.meta.url)),
    emptyOutDir: true,
    // No inline script: the pages' Content-Security-Policy allows scripts from 'self' only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: "es2022",
    rollupOptions: {
      input: {
        portal: `${src}/portal/index.html`,
        explorer: `${src}/explorer/index.html`,
      },
    },
  },
});
