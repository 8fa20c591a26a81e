// The platform's refusals of a form (RFC 9457 problem, 422, `errors` per field) as the
// coordinator and admin read them: in her language where the reason is a common one, else as
// the platform said it.

import { addTexts, t } from "./i18n.js";

addTexts({
  nb: {
    "invalid.decimal_parsing": "Skriv et tall, f.eks. 37,8.",
    "invalid.float_parsing": "Skriv et tall, f.eks. 6.",
    "invalid.int_parsing": "Skriv et helt tall.",
    "invalid.less_than_equal": "Kan ikke være mer enn {le}.",
    "invalid.greater_than": "Må være mer enn {gt}.",
    "invalid.greater_than_equal": "Må være minst {ge}.",
    "invalid.string_too_short": "Må ha minst {min_length} tegn.",
    "invalid.too_short": "For kort: minst {min_length}.",
    "invalid.string_pattern_mismatch": "Har tegn som ikke er tillatt her.",
    "invalid.time_parsing": "Skriv et klokkeslett, f.eks. 08:00.",
    "invalid.missing": "Må fylles ut.",
    "invalid.national_id.string_pattern_mismatch": "Skriv de 11 sifrene i fødselsnummeret, D-nummeret eller FH-nummeret.",
    "invalid.given_name.string_too_short": "Må fylles ut.", "invalid.family_name.string_too_short": "Må fylles ut.",
  },
  en: {
    "invalid.decimal_parsing": "Enter a number, e.g. 37.8.",
    "invalid.float_parsing": "Enter a number, e.g. 6.",
    "invalid.int_parsing": "Enter a whole number.",
    "invalid.less_than_equal": "Cannot be more than {le}.",
    "invalid.greater_than": "Must be more than {gt}.",
    "invalid.greater_than_equal": "Must be at least {ge}.",
    "invalid.string_too_short": "Must have at least {min_length} characters.",
    "invalid.too_short": "Too short: at least {min_length}.",
    "invalid.string_pattern_mismatch": "Has characters not allowed here.",
    "invalid.time_parsing": "Enter a time, e.g. 08:00.",
    "invalid.missing": "Must be filled in.",
    "invalid.national_id.string_pattern_mismatch": "Enter the 11 digits of the national identity number, D number or FH number.",
    "invalid.given_name.string_too_short": "Must be filled in.", "invalid.family_name.string_too_short": "Must be filled in.",
  },
});

/** The reason in her words: one said for this field (`invalid.<field>.<type>`), else for the
 * kind of error, else the platform's. */
function reason(error) {
  const field = (error.loc ?? []).at(-1);
  for (const key of [`invalid.${field}.${error.type}`, `invalid.${error.type}`]) {
    const text = t(key, error.ctx ?? {});
    if (text !== key) return text;
  }
  return String(error.msg ?? "").replace(/^Value error, /, "");
}

/** A 422 problem's errors by field: `["body", "schedule", 0, "deadline"]` → "schedule.0.deadline". */
export function fieldErrors(problem) {
  const found = {};
  for (const e of problem?.errors ?? []) {
    const key = (e.loc ?? []).slice(1).join(".");
    found[key] = found[key] ? `${found[key]} ${reason(e)}` : reason(e);
  }
  return found;
}
