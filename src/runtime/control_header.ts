/**
 * The request's control header (the TwoPart header of every request body). Checked by hand,
 * not with zod: it is parsed once per request, and zod would be the service's largest resident
 * module for this one object.
 */
import { ProtocolError } from "../errors.ts";
import { decodeJson } from "./codec/json.ts";

export interface ControlHeader {
  id: string;
  request_type?: string;
  response_type?: string;
  connection_info: { transport: string; info: string };
  payload_codec?: string;
}

export function parseControlHeader(bytes: Uint8Array | undefined): ControlHeader {
  if (!bytes) throw new ProtocolError("request has no control header");
  let json: unknown;
  try {
    json = decodeJson(bytes);
  } catch (error) {
    throw new ProtocolError("control header is not JSON", { cause: error });
  }
  const problem = _problem(json);
  if (problem !== undefined) throw new ProtocolError(`control header is invalid: ${problem}`);
  const header = json as ControlHeader;
  const info = header.connection_info;
  // Only the known fields, as a schema would return them: the rest of the header is ignored.
  return {
    id: header.id,
    ...(header.request_type !== undefined ? { request_type: header.request_type } : {}),
    ...(header.response_type !== undefined ? { response_type: header.response_type } : {}),
    connection_info: { transport: info.transport, info: info.info },
    ...(header.payload_codec !== undefined ? { payload_codec: header.payload_codec } : {}),
  };
}

/** The first thing wrong, worded as zod words it (`<path>: expected string, received number`). */
function _problem(json: unknown): string | undefined {
  if (!_isObject(json)) return `Invalid input: expected object, received ${_kind(json)}`;
  const wrong = (path: string, value: unknown, optional: boolean) =>
    typeof value === "string" || (optional && value === undefined)
      ? undefined
      : `Invalid input: expected string, received ${_kind(value)} at ${path}`;
  const first = wrong("id", json.id, false) ?? wrong("request_type", json.request_type, true) ??
    wrong("response_type", json.response_type, true);
  if (first !== undefined) return first;
  const info = json.connection_info;
  if (!_isObject(info)) return `Invalid input: expected object, received ${_kind(info)} at connection_info`;
  return wrong("connection_info.transport", info.transport, false) ??
    wrong("connection_info.info", info.info, false) ?? wrong("payload_codec", json.payload_codec, true);
}

function _isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function _kind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}
