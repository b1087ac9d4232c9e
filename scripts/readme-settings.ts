/** Rewrites the settings table in docs/settings.md from src/config.ts (`npm run readme-settings`). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { settingsTable } from '../src/config';

const file = path.join(__dirname, '..', 'docs', 'settings.md');
const text = fs.readFileSync(file, 'utf8');
const begin = '<!-- settings:begin -->';
const end = '<!-- settings:end -->';
const a = text.indexOf(begin);
const b = text.indexOf(end);
if (a < 0 || b < a) throw new Error('docs/settings.md has no settings markers');
fs.writeFileSync(file, `${text.slice(0, a + begin.length)}\n${settingsTable()}\n${text.slice(b)}`);
