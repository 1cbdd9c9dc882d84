// The dashboard's own scripts (static/*.js, not vendor/): eslint's recommended checks and
// one style for all of them. `make lint` runs it; `npx eslint --fix static` applies the style.
import js from "@eslint/js";
import stylistic from "@stylistic/eslint-plugin";

const browser = Object.fromEntries(
  ["window", "document", "console", "fetch", "URL", "WebSocket", "CustomEvent", "Blob",
   "IntersectionObserver", "AudioContext", "localStorage", "navigator", "setTimeout",
   "clearTimeout", "requestAnimationFrame", "Promise", "Set", "Map", "HTMLElement",
   "performance", "getComputedStyle", "ResizeObserver", "Audio", "Event", "crypto",
   "OfflineAudioContext"].map((name) => [name, "readonly"]),
);

export default [
  { ignores: ["static/vendor/**", "node_modules/**"] },
  js.configs.recommended,
  {
    files: ["static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: { ...browser, WaveSurfer: "readonly" },
    },
    plugins: { "@stylistic": stylistic },
    rules: {
      "@stylistic/indent": ["error", 2],
      "@stylistic/quotes": ["error", "double", { avoidEscape: true }],
      "@stylistic/semi": ["error", "always"],
      "@stylistic/comma-dangle": ["error", "always-multiline"],
      "@stylistic/brace-style": ["error", "1tbs", { allowSingleLine: true }],
      "@stylistic/arrow-parens": ["error", "always"],
      "@stylistic/space-before-function-paren": ["error", { anonymous: "always", named: "never", asyncArrow: "always" }],
      "@stylistic/keyword-spacing": "error",
      "@stylistic/space-infix-ops": "error",
      "@stylistic/no-trailing-spaces": "error",
      "@stylistic/eol-last": "error",
      "@stylistic/max-len": ["error", { code: 120, ignoreStrings: true, ignoreTemplateLiterals: true }],
      "prefer-const": "error",
      "no-var": "error",
      "eqeqeq": "error",
      "strict": ["error", "function"],
    },
  },
];
