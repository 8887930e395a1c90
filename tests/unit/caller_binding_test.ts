import assert from "node:assert/strict";
import { bindingRefusal, operatorNamespace } from "../../src/service/caller_binding.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const off = { callerBinding: "off" as const, callerMap: {}, managedK8sNamespaces: null };
const target = { caller: "prod-llama", k8sNamespace: "prod", dgd: "llama" };

Deno.test("off and no allow-list: every caller may scale every DGD (upstream)", () => {
  assert.equal(bindingRefusal(off, target), undefined);
  assert.equal(bindingRefusal(off, { ...target, caller: "anyone" }), undefined);
});

Deno.test("operator: only '{k8s_namespace}-{dgd}' may scale the DGD", () => {
  const s = { ...off, callerBinding: "operator" as const };
  assert.equal(operatorNamespace("prod", "llama"), "prod-llama");
  // As the operator computes it: dots in the DGD name become dashes.
  assert.equal(operatorNamespace("prod", "qwen3-0.6b"), "prod-qwen3-0-6b");
  assert.equal(
    bindingRefusal(s, { caller: "prod-qwen3-0-6b", k8sNamespace: "prod", dgd: "qwen3-0.6b" }),
    undefined,
  );
  assert.equal(
    bindingRefusal(s, { caller: "prod-qwen3-0.6b", k8sNamespace: "prod", dgd: "qwen3-0.6b" })?.reason,
    "caller_not_bound",
  );
  assert.equal(bindingRefusal(s, target), undefined);
  assert.deepEqual(bindingRefusal(s, { ...target, caller: "prod-llam" }), {
    reason: "caller_not_bound",
    message: "Caller 'prod-llam' may not scale DynamoGraphDeployment 'prod/llama': caller binding " +
      "\"operator\" accepts only 'prod-llama' for it; nothing was changed",
  });
  assert.equal(bindingRefusal(s, { ...target, dgd: "llama2" })?.reason, "caller_not_bound");
});

Deno.test("map: the listed DGDs only; unknown callers and prototype keys get nothing", () => {
  const s = { ...off, callerBinding: "map" as const, callerMap: { a: ["prod/llama", "prod/qwen"] } };
  assert.equal(bindingRefusal(s, { ...target, caller: "a" }), undefined);
  assert.equal(bindingRefusal(s, { ...target, caller: "a", dgd: "qwen" }), undefined);
  assert.match(
    bindingRefusal(s, { ...target, caller: "a", dgd: "mistral" })!.message,
    /^Caller 'a' may not scale DynamoGraphDeployment 'prod\/mistral': caller binding "map" allows it 'prod\/llama', 'prod\/qwen'/,
  );
  assert.match(
    bindingRefusal(s, { ...target, caller: "toString" })!.message,
    /allows it no DynamoGraphDeployment/,
  );
});

Deno.test("managed Kubernetes namespaces: a DGD elsewhere is refused first", () => {
  const s = { ...off, callerBinding: "operator" as const, managedK8sNamespaces: ["prod"] };
  assert.equal(bindingRefusal(s, target), undefined);
  const refused = bindingRefusal(s, { ...target, k8sNamespace: "dev", caller: "dev-llama" });
  assert.equal(refused?.reason, "namespace_not_managed");
  assert.equal(
    refused?.message,
    "DynamoGraphDeployment 'dev/llama' requested by caller 'dev-llama' is in a Kubernetes namespace this " +
      "Global Planner does not manage (managed: prod); nothing was changed",
  );
});
