/** Authorization of callers by their Dynamo namespace (pure). */

/** `null` or empty = implicit mode: every caller is accepted. */
export function isAuthorized(
  managedNamespaces: ReadonlySet<string> | null,
  callerNamespace: string,
): boolean {
  return managedNamespaces === null || managedNamespaces.size === 0 || managedNamespaces.has(callerNamespace);
}

export function notAuthorizedMessage(callerNamespace: string): string {
  return `Namespace ${callerNamespace} not authorized`;
}
