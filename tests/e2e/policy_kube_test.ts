/**
 * Our opt-in policies on a real kube-apiserver (RBAC on, deploy/rbac.yaml's ServiceAccount):
 * the stale/duplicate guard and its state on the DGD across a restart, per-DGD annotations
 * (pause, min/max, stabilization, rate limit), Kubernetes Events read back from the API server
 * (series for repeats), and a dry run that persists nothing.
 */
import assert from "node:assert/strict";
import type { KubeConnector, PolicyWiring } from "../../src/kube/mod.ts";
import { REPORTING_CONTROLLER } from "../../src/kube/events.ts";
import type { ScaleResponse } from "../../src/service/contract.ts";
import {
  createDgd,
  DGD_PATH,
  DGDSA_PATH,
  readDgd,
  replicasOf,
  v1alpha1Dgd,
  v1beta1Dgd,
} from "../support/dgd_fixtures.ts";
import { type KubeCluster, startKubeCluster } from "../support/kube_cluster.ts";
import { decode, eventsOn, policyConnector, prefill, scaleThrough } from "../support/policy_harness.ts";
import { waitFor } from "../support/ports.ts";
import { installRbac } from "../support/rbac.ts";

// Deno 2.8+ runs tests with the op and resource sanitizers off unless asked; every child,
// listener, timer and stream a test here opens must be closed by the time it ends.
Deno.test.sanitizer({ ops: true, resources: true });

const NS = "policy";
const P = "globalplanner.dynamo.example/";

const connector = (cluster: KubeCluster, token: string, policy: PolicyWiring): Promise<KubeConnector> =>
  policyConnector(cluster, token, policy);
const scale = (
  kube: KubeConnector,
  request: Record<string, unknown>,
  dryRun = false,
): Promise<ScaleResponse> => scaleThrough(kube.kubeScaler!, NS, request, dryRun);
// deno-lint-ignore no-explicit-any -- API objects
const eventsOf = (cluster: KubeCluster, name: string): Promise<any[]> => eventsOn(cluster, NS, name);

/**
 * Sets annotations (null removes one). A decision that writes nothing is answered from a watched
 * copy, so when `seenBy` already holds one of the DGD this waits until it shows the change.
 */
async function annotate(
  cluster: KubeCluster,
  version: string,
  name: string,
  annotations: Record<string, unknown>,
  seenBy?: KubeConnector,
) {
  const r = await cluster.request("PATCH", DGD_PATH(version, NS, name), { metadata: { annotations } });
  assert.ok(r.ok, r.text);
  const rv = r.json.metadata.resourceVersion;
  const ref = { namespace: NS, name };
  if (seenBy?.touched?.peek(ref) === undefined) return;
  await waitFor(
    () => seenBy.touched!.peek(ref)?.resourceVersion === rv,
    `the watched copy of ${name} at resourceVersion ${rv}`,
  );
}

Deno.test({
  name: "policies on a real API server: stale guard, annotations, Events, dry run",
  async fn(t) {
    const cluster = await startKubeCluster();
    const opened: KubeConnector[] = [];
    try {
      await cluster.createNamespace(NS);
      const token = await installRbac(cluster);
      const guarded = await connector(cluster, token, {
        rejectStale: true,
        dryRun: false,
        eventsInstance: "gp-0",
      });
      opened.push(guarded);
      await createDgd(
        cluster,
        v1beta1Dgd("stale", NS, {
          pre: { role: "prefill", replicas: 1 },
          dec: { role: "decode", replicas: 1 },
        }),
      );

      await t.step(
        "--reject-stale: the request's timestamp is written with the scale, in one write",
        async () => {
          const before = await readDgd(cluster, "v1beta1", NS, "stale");
          const response = await scale(guarded, {
            graph_deployment_name: "stale",
            timestamp: 1000.5,
            target_replicas: prefill(3),
          });
          assert.deepEqual(response, {
            status: "success",
            message: "Scaled stale successfully",
            current_replicas: { prefill: 3, decode: 1 },
          });
          const after = await readDgd(cluster, "v1beta1", NS, "stale");
          assert.equal(replicasOf(after).pre, 3);
          assert.deepEqual(JSON.parse(after.metadata.annotations[`${P}last-request`]), {
            timestamp: 1000.5,
            caller: "c",
            targets: { prefill: 3 },
          });
          assert.equal(
            Number(after.metadata.resourceVersion) > Number(before.metadata.resourceVersion),
            true,
          );
        },
      );

      await t.step("an older request → rejected, both timestamps, nothing written", async () => {
        const before = await readDgd(cluster, "v1beta1", NS, "stale");
        const response = await scale(guarded, {
          graph_deployment_name: "stale",
          timestamp: 1000.4,
          target_replicas: prefill(5),
        });
        assert.deepEqual(response, {
          status: "rejected",
          message:
            `Stale scale request for DynamoGraphDeployment '${NS}/stale': its timestamp 1000.4 is not newer than ` +
            "1000.5, the last request applied (from caller 'c'); nothing was changed",
          current_replicas: { prefill: 3, decode: 1 },
        });
        assert.equal(
          (await readDgd(cluster, "v1beta1", NS, "stale")).metadata.resourceVersion,
          before.metadata.resourceVersion,
        );
      });

      await t.step("an identical retry → the first answer, no API call at all", async () => {
        const calls = guarded.client.calls;
        const response = await scale(guarded, {
          graph_deployment_name: "stale",
          timestamp: 1000.5,
          target_replicas: prefill(3),
        });
        assert.deepEqual(response, {
          status: "success",
          message: "Scaled stale successfully",
          current_replicas: { prefill: 3, decode: 1 },
        });
        assert.equal(guarded.client.calls, calls);
      });

      await t.step(
        "after a restart the state is read from the DGD: still stale, a retry writes nothing",
        async () => {
          const restarted = await connector(cluster, token, { rejectStale: true, dryRun: false });
          opened.push(restarted);
          const before = await readDgd(cluster, "v1beta1", NS, "stale");
          const stale = await scale(restarted, {
            graph_deployment_name: "stale",
            timestamp: 999,
            target_replicas: prefill(1),
          });
          assert.equal(stale.status, "rejected");
          assert.match(stale.message, /its timestamp 999 is not newer than 1000\.5/);
          const retry = await scale(restarted, {
            graph_deployment_name: "stale",
            timestamp: 1000.5,
            target_replicas: prefill(3),
          });
          assert.deepEqual(retry, {
            status: "success",
            message:
              "Scaled stale successfully (a retry of the request applied at timestamp 1000.5; nothing written again)",
            current_replicas: { prefill: 3, decode: 1 },
          });
          assert.equal(
            (await readDgd(cluster, "v1beta1", NS, "stale")).metadata.resourceVersion,
            before.metadata.resourceVersion,
          );
          const newer = await scale(restarted, {
            graph_deployment_name: "stale",
            timestamp: 1001,
            target_replicas: prefill(2),
          });
          assert.equal(newer.status, "success");
          assert.equal(replicasOf(await readDgd(cluster, "v1beta1", NS, "stale")).pre, 2);
        },
      );

      await t.step(
        "a request without a timestamp is never stale (upstream's field is optional)",
        async () => {
          const response = await scale(guarded, {
            graph_deployment_name: "stale",
            target_replicas: prefill(4),
          });
          assert.equal(response.status, "success");
          assert.equal(replicasOf(await readDgd(cluster, "v1beta1", NS, "stale")).pre, 4);
        },
      );

      await t.step("through a scaling adapter, the state still lands on the DGD (v1alpha1)", async () => {
        await createDgd(
          cluster,
          v1alpha1Dgd("adapted", NS, { P: { role: "prefill", replicas: 1, adapter: true } }),
        );
        const response = await scale(guarded, {
          graph_deployment_name: "adapted",
          timestamp: 50,
          target_replicas: prefill(2),
        });
        assert.equal(response.status, "success", response.message);
        assert.equal(
          (await cluster.request("GET", DGDSA_PATH("v1beta1", NS, "adapted-p"))).json.spec.replicas,
          2,
        );
        const dgd = await readDgd(cluster, "v1alpha1", NS, "adapted");
        assert.equal(JSON.parse(dgd.metadata.annotations[`${P}last-request`]).timestamp, 50);
        const stale = await scale(guarded, {
          graph_deployment_name: "adapted",
          timestamp: 49,
          target_replicas: prefill(7),
        });
        assert.equal(stale.status, "rejected");
        assert.equal(
          (await cluster.request("GET", DGDSA_PATH("v1beta1", NS, "adapted-p"))).json.spec.replicas,
          2,
        );
      });

      await createDgd(
        cluster,
        v1alpha1Dgd("annotated", NS, {
          Pre: { role: "prefill", replicas: 2 },
          Dec: { role: "decode", replicas: 4 },
        }),
      );

      await t.step("paused → rejected (says paused), current replicas, nothing written", async () => {
        await annotate(cluster, "v1alpha1", "annotated", { [`${P}paused`]: "true" }, guarded);
        const before = await readDgd(cluster, "v1alpha1", NS, "annotated");
        for (let i = 0; i < 2; i++) {
          const response = await scale(guarded, {
            graph_deployment_name: "annotated",
            target_replicas: prefill(5),
          });
          assert.deepEqual(response, {
            status: "rejected",
            message:
              `Scaling of DynamoGraphDeployment '${NS}/annotated' is paused (annotation ${P}paused: "true"); ` +
              "nothing was changed",
            current_replicas: { prefill: 2, decode: 4 },
          });
        }
        assert.equal(
          (await readDgd(cluster, "v1alpha1", NS, "annotated")).metadata.resourceVersion,
          before.metadata.resourceVersion,
        );
        await annotate(cluster, "v1alpha1", "annotated", { [`${P}paused`]: "false" }, guarded);
      });

      await t.step("max replicas: clamped, said in the message, current_replicas truthful", async () => {
        await annotate(cluster, "v1alpha1", "annotated", { [`${P}prefill-max-replicas`]: "3" }, guarded);
        const response = await scale(guarded, {
          graph_deployment_name: "annotated",
          target_replicas: prefill(5),
        });
        assert.deepEqual(response, {
          status: "success",
          message:
            `Scaled annotated successfully; adjusted by policy: prefill 5 → 3 (${P}prefill-max-replicas 3)`,
          current_replicas: { prefill: 3, decode: 4 },
        });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "annotated")).Pre, 3);
        const exact = await scale(guarded, {
          graph_deployment_name: "annotated",
          target_replicas: prefill(3),
        });
        assert.equal(exact.message, "Scaled annotated successfully");
      });

      await t.step("scale-down stabilization holds the highest recent recommendation", async () => {
        await annotate(
          cluster,
          "v1alpha1",
          "annotated",
          { [`${P}scale-down-stabilization-seconds`]: "300" },
          guarded,
        );
        const response = await scale(guarded, {
          graph_deployment_name: "annotated",
          target_replicas: decode(1),
        });
        assert.equal(response.status, "success");
        assert.match(
          response.message,
          /adjusted by policy: decode 1 → 4 \(scale-down stabilization: highest recommendation in the last 300 s is 4\)/,
        );
        assert.deepEqual(response.current_replicas, { prefill: 3, decode: 4 });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "annotated")).Dec, 4);
      });

      await t.step("a malformed annotation fails the request, naming it; nothing written", async () => {
        await annotate(cluster, "v1alpha1", "annotated", { [`${P}scale-up-limit`]: "lots" }, guarded);
        const response = await scale(guarded, {
          graph_deployment_name: "annotated",
          target_replicas: prefill(1),
        });
        assert.deepEqual(response, {
          status: "error",
          message:
            `DynamoGraphDeployment '${NS}/annotated' annotation ${P}scale-up-limit: expected a whole number >= 0, ` +
            'got "lots"; nothing was changed',
          current_replicas: {},
        });
        assert.equal(replicasOf(await readDgd(cluster, "v1alpha1", NS, "annotated")).Pre, 3);
        await annotate(cluster, "v1alpha1", "annotated", { [`${P}scale-up-limit`]: null }, guarded);
      });

      await t.step(
        "Events on the DGD: reasons, notes, reporting controller, series for repeats",
        async () => {
          await guarded.events!.flush();
          const stale = await eventsOf(cluster, "stale");
          const byReason = (items: typeof stale, reason: string) => items.filter((e) => e.reason === reason);
          assert.equal(byReason(stale, "Scaled").length >= 1, true, JSON.stringify(stale));
          const scaled = byReason(stale, "Scaled")[0];
          assert.equal(scaled.note, "caller c: prefill 1 → 3, decode 1 → 1; budget: not configured");
          assert.equal(scaled.type, "Normal");
          assert.equal(scaled.reportingController, REPORTING_CONTROLLER);
          assert.equal(scaled.reportingInstance, "gp-0");
          assert.equal(scaled.action, "Scale");
          const dgd = await readDgd(cluster, "v1beta1", NS, "stale");
          assert.deepEqual(scaled.regarding, {
            apiVersion: "nvidia.com/v1beta1",
            kind: "DynamoGraphDeployment",
            namespace: NS,
            name: "stale",
            uid: dgd.metadata.uid,
          });
          const staleEvent = byReason(stale, "Stale");
          assert.equal(staleEvent.length, 1);
          assert.equal(staleEvent[0].type, "Warning");
          assert.match(
            staleEvent[0].note,
            /^caller c: prefill → 5 refused: Stale scale request .* 1000\.4 is not newer than 1000\.5/,
          );

          const annotated = await eventsOf(cluster, "annotated");
          const paused = byReason(annotated, "Paused");
          assert.equal(paused.length, 1, "the identical repeat is a series, not a second Event");
          assert.equal(paused[0].series.count, 2);
          assert.ok(paused[0].series.lastObservedTime);
          assert.equal(byReason(annotated, "Clamped").length, 2, "max clamp and stabilization");
          assert.match(
            byReason(annotated, "Clamped")[0].note,
            /^caller c: prefill 2 → 3, decode 4 → 4; adjusted by policy: prefill 5 → 3 \(globalplanner\.dynamo\.example\/prefill-max-replicas 3\); budget: not configured$/,
          );
          assert.equal(byReason(annotated, "ScaleFailed").length, 1, "the malformed annotation");

          // `kubectl describe dgd` lists core/v1 events by the object's uid: the same Events show there.
          const core = await cluster.request(
            "GET",
            `/api/v1/namespaces/${NS}/events?fieldSelector=${
              encodeURIComponent(`involvedObject.uid=${dgd.metadata.uid}`)
            }`,
          );
          assert.ok(core.ok, core.text);
          assert.deepEqual(
            // deno-lint-ignore no-explicit-any
            [...new Set(core.json.items.map((e: any) => e.reason))].sort(),
            ["Scaled", "Stale"],
          );
        },
      );

      await t.step(
        "--dry-run: decides on the real DGD, writes with dryRun=All, persists nothing",
        async () => {
          const dry = await connector(cluster, token, {
            rejectStale: true,
            dryRun: true,
            eventsInstance: "gp-dry",
          });
          opened.push(dry);
          await createDgd(
            cluster,
            v1beta1Dgd("dry", NS, {
              pre: { role: "prefill", replicas: 1 },
              dec: { role: "decode", replicas: 2 },
            }),
          );
          await createDgd(
            cluster,
            v1alpha1Dgd("dry-adapted", NS, { P: { role: "prefill", replicas: 1, adapter: true } }),
          );
          await annotate(cluster, "v1beta1", "dry", { [`${P}prefill-max-replicas`]: "4" }, dry);
          const before = await readDgd(cluster, "v1beta1", NS, "dry");
          const response = await scale(dry, {
            graph_deployment_name: "dry",
            timestamp: 7,
            target_replicas: prefill(6),
          }, true);
          assert.deepEqual(response, {
            status: "success",
            message:
              `[dry-run] Would scale dry: prefill 1 → 4, decode 2 → 2; adjusted by policy: prefill 6 → 4 ` +
              `(${P}prefill-max-replicas 4) (nothing persisted)`,
            current_replicas: { prefill: 4, decode: 2 },
          });
          const after = await readDgd(cluster, "v1beta1", NS, "dry");
          assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
          assert.equal(after.metadata.annotations[`${P}last-request`], undefined);
          // The same request again is not a "retry": nothing was applied.
          const again = await scale(dry, {
            graph_deployment_name: "dry",
            timestamp: 7,
            target_replicas: prefill(6),
          }, true);
          assert.equal(again.message, response.message);

          const adapterBefore =
            (await cluster.request("GET", DGDSA_PATH("v1beta1", NS, "dry-adapted-p"))).json;
          const viaAdapter = await scale(dry, {
            graph_deployment_name: "dry-adapted",
            target_replicas: prefill(3),
          }, true);
          assert.equal(
            viaAdapter.message,
            "[dry-run] Would scale dry-adapted: prefill 1 → 3 (nothing persisted)",
          );
          assert.deepEqual(viaAdapter.current_replicas, { prefill: 3 });
          const adapterAfter =
            (await cluster.request("GET", DGDSA_PATH("v1beta1", NS, "dry-adapted-p"))).json;
          assert.equal(adapterAfter.metadata.resourceVersion, adapterBefore.metadata.resourceVersion);
          assert.equal(adapterAfter.spec.replicas, 1);

          // Refusals are what would have happened, too; and no Events are written.
          await createDgd(cluster, v1beta1Dgd("dry-paused", NS, { pre: { role: "prefill", replicas: 1 } }));
          await annotate(cluster, "v1beta1", "dry-paused", { [`${P}paused`]: "true" }, dry);
          const paused = await scale(dry, {
            graph_deployment_name: "dry-paused",
            target_replicas: prefill(2),
          }, true);
          assert.equal(paused.status, "rejected");
          assert.match(
            paused.message,
            /^\[dry-run\] Scaling of DynamoGraphDeployment '.*dry-paused' is paused/,
          );
          await dry.events!.flush();
          assert.deepEqual(await eventsOf(cluster, "dry"), []);
          assert.deepEqual(await eventsOf(cluster, "dry-paused"), []);
        },
      );

      await t.step("without any policy and annotations the answers are upstream's", async () => {
        const plain = await connector(cluster, token, { rejectStale: false, dryRun: false });
        opened.push(plain);
        await createDgd(cluster, v1beta1Dgd("plain", NS, { pre: { role: "prefill", replicas: 1 } }));
        const first = await scale(plain, {
          graph_deployment_name: "plain",
          timestamp: 10,
          target_replicas: prefill(2),
        });
        const older = await scale(plain, {
          graph_deployment_name: "plain",
          timestamp: 9,
          target_replicas: prefill(3),
        });
        assert.deepEqual(first, {
          status: "success",
          message: "Scaled plain successfully",
          current_replicas: { prefill: 2 },
        });
        assert.deepEqual(older, {
          status: "success",
          message: "Scaled plain successfully",
          current_replicas: { prefill: 3 },
        });
        assert.equal((await readDgd(cluster, "v1beta1", NS, "plain")).metadata.annotations, undefined);
      });
    } finally {
      for (const kube of opened) await kube.close();
      await cluster.stop();
    }
  },
});
