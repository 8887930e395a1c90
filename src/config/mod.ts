export { type Config, loadConfig, type LoadResult } from "./config.ts";
export { USAGE } from "./args.ts";
export { loadConfigParsers } from "./config_file.ts";
export * from "./env.ts";
export * from "./status.ts";
