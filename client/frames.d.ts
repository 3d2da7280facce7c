// Types of the internal frame codec (frames.js), for the unit tests; not part of the public API.

export declare const KIND_MESSAGE: 0x01
export declare const KIND_PUBLISH: 0x02
export declare function utf8(text: string): Uint8Array
export declare function checkRoomName(room: unknown): asserts room is string
export declare function payloadOf(data: unknown): string | Uint8Array | null
export declare function encodeRequest(request: { type: string; ref: number; [field: string]: unknown }): string
export declare function encodeBinaryPublish(ref: number, room: string, payload: Uint8Array): Uint8Array
export declare function decodeBinaryMessage(
  buffer: ArrayBuffer | ArrayBufferView,
): { room: string | null; offset: number | null; data: Uint8Array } | null
export declare function decodeTextFrame(text: string): { type: string; [field: string]: unknown } | null
