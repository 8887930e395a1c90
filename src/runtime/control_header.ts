/** The request's control header (the TwoPart header of every request body). */
import { z } from "zod";
import { ProtocolError } from "../errors.ts";
import { decodeJson } from "./codec/json.ts";

const ControlHeaderSchema = z.object({
  id: z.string(),
  request_type: z.string().optional(),
  response_type: z.string().optional(),
  connection_info: z.object({ transport: z.string(), info: z.string() }),
  payload_codec: z.string().optional(),
});
export type ControlHeader = z.infer<typeof ControlHeaderSchema>;

export function parseControlHeader(bytes: Uint8Array | undefined): ControlHeader {
  if (!bytes) throw new ProtocolError("request has no control header");
  let json: unknown;
  try {
    json = decodeJson(bytes);
  } catch (error) {
    throw new ProtocolError("control header is not JSON", { cause: error });
  }
  const parsed = ControlHeaderSchema.safeParse(json);
  if (!parsed.success) {
    throw new ProtocolError(`control header is invalid: ${parsed.error.issues[0]?.message}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}
