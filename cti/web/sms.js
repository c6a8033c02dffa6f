// How many SMS parts a text needs: the same rule as the server (the modem package's
// codec, sms_parts_needed), so the counter under the form agrees with it. The server's answer
// to POST /api/sms stays the one that counts.
//
// GSM 7-bit when every character is in the GSM 03.38 default alphabet or its extension
// table (an extension character takes two septets): 160 septets in one SMS, 153 in each
// part of a longer one. Otherwise UCS-2: 70 code units (140 octets) in one SMS, 67 in
// each part; a character outside the BMP takes two. A part never splits a character.

const GSM7_DEFAULT =
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ" +
  " !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§" +
  "¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION = "\f^{}\\[~]|€";

const BASIC = new Set(GSM7_DEFAULT);
const EXTENDED = new Set(GSM7_EXTENSION);

const LIMITS = {
  gsm7: { single: 160, each: 153, unit: 1 }, // septets
  ucs2: { single: 140, each: 134, unit: 2 }, // octets
};

// {encoding: "gsm7"|"ucs2", parts, chars (code points), left (in the current part, in
// septets or UCS-2 code units)}. An empty text needs no part.
export function smsParts(text) {
  const chars = [...String(text ?? "")];
  const gsm7 = chars.every((ch) => BASIC.has(ch) || EXTENDED.has(ch));
  const encoding = gsm7 ? "gsm7" : "ucs2";
  const sizes = gsm7 ? chars.map((ch) => (EXTENDED.has(ch) ? 2 : 1)) : chars.map((ch) => ch.length * 2);
  const { single, each, unit } = LIMITS[encoding];
  const total = sizes.reduce((sum, size) => sum + size, 0);
  if (total === 0) return { encoding, parts: 0, chars: 0, left: single / unit };
  if (total <= single) return { encoding, parts: 1, chars: chars.length, left: (single - total) / unit };
  let parts = 1;
  let used = 0;
  for (const size of sizes) {
    if (used + size > each) {
      parts += 1;
      used = 0;
    }
    used += size;
  }
  return { encoding, parts, chars: chars.length, left: Math.floor((each - used) / unit) };
}
