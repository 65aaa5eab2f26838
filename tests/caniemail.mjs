// Runs caniemail (caniemail.com's data, pinned in tests/package.json) for
// tests/test_email_clients.py: reads {"clients": [...], "documents": {name: html}}
// on stdin, writes {name: {client: {feature: [where...]}}} on stdout, where
// each "where" is the source around a finding, for the test's allowlist.
// By hand: `node tests/caniemail.mjs [--clients a,b] build/2021-07/*.html`
// prints the same for those files (default clients: the test's).
//
// The whole document is checked once, as a client would get it; then each
// <style> (as CSS) and the HTML without its CSS are checked apart, only to
// say where a finding is: caniemail's positions inside a <style> are
// relative to that stylesheet, not to the document.
import { readFileSync } from 'node:fs';
import { caniemail } from 'caniemail';

const CLIENTS = [
  'gmail.desktop-webmail', 'gmail.ios', 'gmail.android', 'apple-mail.macos', 'apple-mail.ios',
  'outlook.windows', 'outlook.outlook-com', 'yahoo.desktop-webmail', 'yahoo.ios', 'yahoo.android',
  'samsung-email.android', 'thunderbird.macos'
];

const BEFORE = 60;
const AFTER = 160;

const read = async () => {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
};

const around = (text, position) => {
  if (!position) return '';
  const line = text.split('\n')[position.start.line - 1] ?? '';
  return line.slice(Math.max(0, position.start.column - 1 - BEFORE), position.start.column - 1 + AFTER);
};

const findings = (options, client) => caniemail({ ...options, clients: [client] }).issues.errors.get(client) ?? [];

const check = (html, client) => {
  const found = {};
  for (const issue of findings({ html }, client)) found[issue.title] ??= [];
  const styles = [...html.matchAll(/<style[^>]*>([\s\S]*?)<\/style>/gi)].map((m) => m[1]);
  const parts = [
    ...styles.filter((css) => css.trim()).map((css) => [{ css }, css]),
    [{ html: html.replace(/(<style[^>]*>)[\s\S]*?(<\/style>)/gi, '$1$2') }, html]
  ];
  for (const [options, text] of parts) {
    for (const issue of findings(options, client)) {
      const where = around(options.css ?? options.html, issue.position);
      if (!(found[issue.title] ??= []).includes(where)) found[issue.title].push(where);
    }
  }
  return found;
};

const fromFiles = () => {
  const args = process.argv.slice(2);
  const at = args.indexOf('--clients');
  const clients = at >= 0 ? args.splice(at, 2)[1].split(',') : CLIENTS;
  return { clients, documents: Object.fromEntries(args.map((f) => [f, readFileSync(f, 'utf8')])) };
};

const { clients, documents } = process.argv.length > 2 ? fromFiles() : await read();
const out = {};
for (const [name, html] of Object.entries(documents)) {
  out[name] = {};
  // One client at a time: a gap in the data for one (it throws) must name that client.
  for (const client of clients) {
    try {
      out[name][client] = check(html, client);
    } catch (error) {
      throw new Error(`caniemail failed for ${client}: ${error.message}`);
    }
  }
}
process.stdout.write(JSON.stringify(out, null, process.argv.length > 2 ? 1 : 0) + '\n');
