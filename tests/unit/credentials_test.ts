import assert from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { loadCredentials } from "../../src/kube/credentials.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const made: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of made) Deno.removeSync(dir, { recursive: true });
});
async function saDir(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "gp-sa-unit-" });
  made.push(dir);
  for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/${name}`, text);
  return dir;
}

Deno.test("in cluster: server from KUBERNETES_SERVICE_HOST/PORT, IPv6 bracketed, files read", async () => {
  const dir = await saDir({ token: "tok\n", "ca.crt": "PEM", namespace: "dynamo-system" });
  const env: Record<string, string> = { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "6443" };
  const c = await loadCredentials({ serviceAccountDir: dir, getEnv: (n) => env[n] });
  assert.equal(c.server, "https://[fd00::1]:6443");
  assert.equal(c.caPem, "PEM");
  assert.equal(c.namespace, "dynamo-system");
  assert.equal(await c.token(), "tok");
  const v4 = await loadCredentials({
    serviceAccountDir: dir,
    getEnv: (n) => ({ KUBERNETES_SERVICE_HOST: "10.0.0.1" } as Record<string, string>)[n],
  });
  assert.equal(v4.server, "https://10.0.0.1:443");
});

Deno.test("in cluster: a missing token or CA fails at start with the path named", async () => {
  const env = (n: string) => (n === "KUBERNETES_SERVICE_HOST" ? "10.0.0.1" : undefined);
  const noToken = await saDir({ "ca.crt": "PEM" });
  await assert.rejects(
    loadCredentials({ serviceAccountDir: noToken, getEnv: env }),
    (e: Error) => e instanceof ConfigError && e.message.includes(`${noToken}/token`),
  );
  const noCa = await saDir({ token: "t" });
  await assert.rejects(loadCredentials({ serviceAccountDir: noCa, getEnv: env }), /ca\.crt is missing/);
});

Deno.test("neither in cluster nor KUBECONFIG → a clear ConfigError pointing at --no-operation", async () => {
  await assert.rejects(
    loadCredentials({ serviceAccountDir: "/nonexistent", getEnv: () => undefined }),
    /no Kubernetes credentials.*--no-operation/,
  );
});

Deno.test("kubeconfig: exec users are refused with a reason", async () => {
  const dir = await Deno.makeTempDir();
  made.push(dir);
  const path = `${dir}/config`;
  await Deno.writeTextFile(
    path,
    `
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {exec: {command: aws}}}]
`,
  );
  await assert.rejects(
    loadCredentials({ serviceAccountDir: "/x", getEnv: (n) => (n === "KUBECONFIG" ? path : undefined) }),
    /exec and auth-provider users are not supported/,
  );
});
