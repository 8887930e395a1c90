/**
 * Response items as the Python caller expects them: every data frame is a
 * `NetworkStreamWrapper` `{"data": <Annotated>, "complete_final": false}`, the last one is
 * `{"complete_final": true}`.
 *
 * Error items copy the shape a 1.6.1 Python endpoint produces when its handler raises
 * `ValueError` (captured, see docs/runtime-1.6.1.md), so the caller's exception text is the
 * same as with upstream: `InvalidRequest: ValueError: <message>`. `comment` carries the
 * message for older callers that render comments only.
 */

export function dataItem(value: unknown): unknown {
  return { data: { data: value }, complete_final: false };
}

export function errorItem(message: string): unknown {
  const text = `ValueError: ${message}`;
  return {
    data: {
      event: "error",
      comment: [message],
      error: {
        error_type: { Backend: "InvalidArgument" },
        class: "InvalidRequest",
        reason: "backend.invalid_argument",
        message: text,
        diagnostic: text,
      },
    },
    complete_final: false,
  };
}

export const FINAL_ITEM = { complete_final: true };
