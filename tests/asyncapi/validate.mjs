// Validates an AsyncAPI document with the official parser: prints every diagnostic, and exits
// non-zero when the document is invalid (any diagnostic of severity error).
// Usage: node validate.mjs path/to/document.json
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const path = process.argv[2];
if (!path) {
  console.error('usage: node validate.mjs <asyncapi document>');
  process.exit(2);
}
const text = await readFile(path, 'utf8');
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
for (const d of diagnostics) {
  const where = (d.path || []).join('.');
  console.log(`${DiagnosticSeverity[d.severity] ?? d.severity} ${d.code} at ${where || '(root)'}: ${d.message}`);
}
if (!document || errors.length > 0) {
  console.error(`invalid AsyncAPI document: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`valid AsyncAPI ${document.version()} document: ${document.channels().length} channels, ${document.messages().length} messages`);
