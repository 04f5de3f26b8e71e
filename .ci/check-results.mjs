// Reads vitest's JSON report. Every test must have run, except those that need a
// MongoDB server (MONGO_URL), which this machine cannot have; those must say so.
import { readFileSync } from 'node:fs';

const report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let passed = 0;
let failed = 0;
let skipped = 0;
const badSkips = [];
for (const file of report.testResults) {
  for (const t of file.assertionResults) {
    if (t.status === 'passed') passed++;
    else if (t.status === 'failed') failed++;
    else {
      skipped++;
      const name = [...t.ancestorTitles, t.title].join(' > ');
      if (!/MONGO_URL/.test(name)) badSkips.push(`${file.name}: ${name} (${t.status})`);
    }
  }
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
if (badSkips.length > 0) {
  console.error(`Tests skipped without a reason this machine accepts:\n  ${badSkips.join('\n  ')}`);
  process.exit(1);
}
if (failed > 0 || passed === 0) process.exit(1);
