// Reads {"uris": [...], "paths": [...]} as JSON on stdin and writes, for each URI, how an MCP
// server on Node reads it: new URL(uri).href (as the TypeScript SDK looks resources up), and
// for file: URLs path.resolve(fileURLToPath(uri)) (as a file server reads it); and for each
// path, the href of pathToFileURL(path) (as a file server lists it). Used by uri_test.go.
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { uris, paths } = JSON.parse(input);

const out = { version: process.version, uris: [], paths: [] };
for (const uri of uris) {
	const r = {};
	try {
		const u = new URL(uri);
		r.href = u.href;
		if (u.protocol === 'file:') {
			try {
				r.path = path.resolve(fileURLToPath(uri));
			} catch (e) {
				r.pathError = String(e.code || e.name);
			}
		}
	} catch (e) {
		r.error = String(e.code || e.name);
	}
	out.uris.push(r);
}
for (const p of paths) {
	out.paths.push(pathToFileURL(p).href);
}
process.stdout.write(JSON.stringify(out));
