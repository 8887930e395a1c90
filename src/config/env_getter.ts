/** How configuration reads a variable (injected, so tests need no process environment). */
export type EnvGetter = (name: string) => string | undefined;
