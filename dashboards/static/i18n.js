// Texts of the nurse app in Norwegian bokmål (the default) and English, and the formatting of
// numbers and times for the chosen language. `t(key, values)` fills {placeholders}.

const nb = {
  "app.name": "Tryggheim",
  "skip": "Hopp til hovedinnholdet",
  "nav.label": "Hovedmeny",
  "nav.patients": "Pasienter",
  "nav.alarms": "Alarmer",
  "nav.settings": "Innstillinger",
  "nav.open_alarms": "{count} ukvitterte",
  "signed_in_as": "Innlogget som {name}",
  "sign_out": "Logg ut",
  "language.switch": "English",
  "language.switch_label": "Switch to English",

  "login.title": "Logg inn",
  "login.intro": "Logg inn med brukeren du har fått fra kommunen.",
  "login.username": "Brukernavn",
  "login.password": "Passord",
  "login.submit": "Logg inn",
  "login.wrong": "Feil brukernavn eller passord.",
  "login.expired": "Økten er utløpt. Logg inn igjen.",
  "login.forbidden": "Brukeren din har ikke tilgang til pasientene. Logg inn som sykepleier eller koordinator.",
  "login.unreachable": "Får ikke kontakt med plattformen. Prøv igjen om litt.",
  "login.busy": "Logger inn …",

  "connection.connecting": "Kobler til …",
  "connection.live": "Direkte",
  "connection.stale": "Ikke oppdatert",
  "connection.lost": "Frakoblet",
  "connection.updated": "Oppdatert {time}",
  "connection.lost_title": "Ikke direkte: forbindelsen til plattformen er brutt.",
  "connection.stale_title": "Ikke direkte: ingen livstegn fra plattformen på {seconds} sekunder.",
  "connection.since": "Det du ser, kan være utdatert. Sist bekreftet oppdatert kl. {time}. Prøver å koble til igjen …",
  "connection.never": "Det du ser, kan være utdatert. Prøver å koble til …",
  "connection.retry": "Koble til nå",
  "connection.back": "Direkte igjen. Visningen er oppdatert.",
  "platform.degraded": "Driftsproblem i Tryggheim: {problems}. Nye målinger og alarmer kan komme sent. Hold kontakt med IT-vakten.",
  "platform.record_store": "databasen svarer ikke",
  "platform.ingest": "ingen forbindelse til hjemmene",
  "platform.gateways_offline": "mange hjem er uten forbindelse samtidig",
  "platform.hl7_outbound": "meldinger til fastleger blir ikke levert",
  "platform.timeseries": "grafene ligger langt etter",
  "stale_marker": "Kan være utdatert",

  "patients.title": "Mine pasienter",
  "patients.summary": "{count} pasienter, {alarms} med åpne alarmer. Sortert etter hastegrad: alarmer først (kritiske øverst), så verdier utenfor pasientens grenser.",
  "patients.list_label": "Pasienter sortert etter hastegrad",
  "patients.empty": "Du har ingen pasienter ennå.",
  "patients.no_values": "Ingen målinger ennå.",
  "patients.measured": "Sist målt {time}",
  "patients.more_alarms": "og {count} til",
  "patients.new_top": "Rekkefølgen er endret: {name} står nå øverst.",
  "patients.out_of_range": "{count} verdier utenfor grensene",

  "vital.bp": "Blodtrykk",
  "vital.pulse": "Puls",
  "vital.spo2": "Oksygenmetning",
  "vital.temp": "Temperatur",
  "vital.weight": "Vekt",
  "vital.glucose": "Blodsukker",
  "glucose.sample.capillary_whole_blood": "kapillært fullblod",
  "glucose.sample.capillary_plasma": "kapillært plasma",
  "glucose.sample.venous_whole_blood": "venøst fullblod",
  "glucose.sample.venous_plasma": "venøst plasma",
  "glucose.sample.arterial_whole_blood": "arterielt fullblod",
  "glucose.sample.arterial_plasma": "arterielt plasma",
  "glucose.sample.undetermined_whole_blood": "fullblod, ukjent prøvested",
  "glucose.sample.undetermined_plasma": "plasma, ukjent prøvested",
  "glucose.sample.interstitial_fluid": "vevsvæske (sensor)",
  "glucose.sample.not_stated": "prøvetype ikke oppgitt",
  "vital.systolic": "Systolisk",
  "vital.diastolic": "Diastolisk",
  "vital.high": "Over grensen {limit}",
  "vital.low": "Under grensen {limit}",
  "vital.normal": "Innenfor grensene",
  "vital.none": "ingen måling",

  "alarm.state.raised": "Ny",
  "alarm.state.acknowledged": "Kvittert",
  "alarm.state.in_progress": "Under arbeid",
  "alarm.state.resolved": "Løst",
  "alarm.state.closed": "Lukket",
  "severity.critical": "Kritisk",
  "severity.high": "Høy",
  "severity.medium": "Middels",
  "severity.low": "Lav",
  "alarm.badge": "{severity}: {alarm}",
  "alarm.raised": "Utløst {time}",
  "alarm.measured": "Målt {value}",
  "alarm.device": "Enhet {device}",
  "alarm.acknowledged_by": "Kvittert av {who} kl. {time}",
  "alarm.you": "deg",
  "alarm.escalated": "Eskalert til nivå {level}",
  "alarm.note": "Notat: {note}",
  "alarm.acknowledge": "Kvitter",
  "alarm.start": "Ta oppdraget",
  "alarm.resolve": "Marker som løst",
  "alarm.close": "Lukk alarmen",
  "alarm.note_label": "Hva ble funnet og gjort? (påkrevd)",
  "alarm.note_missing": "Skriv hva som ble funnet og gjort før alarmen markeres som løst.",
  "alarm.done.acknowledge": "Alarmen {alarm} for {patient} er kvittert.",
  "alarm.done.start": "Du har tatt oppdraget: {alarm} for {patient}.",
  "alarm.done.resolve": "Alarmen {alarm} for {patient} er løst.",
  "alarm.done.close": "Alarmen {alarm} for {patient} er lukket.",
  "alarm.conflict": "Alarmen er allerede endret av noen andre. Visningen er oppdatert.",
  "alarm.failed": "Det gikk ikke: {detail}",

  "alarms.title": "Alarmer",
  "alarms.intro": "Alarmer for dine pasienter. De som haster mest, står øverst: nye før kvitterte, kritiske før lavere.",
  "alarms.show": "Vis",
  "alarms.show_open": "Åpne",
  "alarms.show_all": "Alle siste",
  "alarms.empty": "Ingen åpne alarmer.",
  "alarms.empty_all": "Ingen alarmer.",
  "alarms.list_label": "Alarmer sortert etter hastegrad",

  "new_alarms.title": "Ny alarm",
  "new_alarms.item": "{severity} alarm: {alarm} hos {patient}",
  "new_alarms.announce": "Ny {severity} alarm: {alarm} hos {patient}.",
  "new_alarms.open": "Åpne alarmer",
  "new_alarms.dismiss": "Skjul varselet",
  "new_alarms.sound_blocked": "Lydvarsel er slått på, men nettleseren har stoppet lyden. Trykk hvor som helst på siden for å slå den på.",

  "patient.back": "Alle pasienter",
  "patient.not_found": "Fant ikke pasienten.",
  "patient.gp": "Fastlege: {name}",
  "patient.alarms": "Alarmer",
  "patient.no_open_alarms": "Ingen åpne alarmer.",
  "patient.recent_alarms": "Tidligere alarmer",
  "patient.trends": "Målinger over tid",
  "patient.range": "Tidsrom",
  "patient.range.1d": "Siste døgn",
  "patient.range.7d": "7 dager",
  "patient.range.30d": "30 dager",
  "patient.range.90d": "90 dager",
  "patient.no_measurements": "Ingen målinger i dette tidsrommet.",
  "patient.truncated": "Viser de nyeste {count} verdiene.",
  "patient.loading": "Henter data …",

  "chart.summary": "{count} målinger fra {from} til {to}. Siste: {last}. Laveste {min}, høyeste {max}.",
  "chart.summary_bp": "{count} målinger fra {from} til {to}. Siste: {last}. Systolisk {sys}, diastolisk {dia}.",
  "chart.thresholds": "Grenser: {list}.",
  "chart.no_thresholds": "Ingen grenser for denne målingen.",
  "chart.limit_above": "alarm over {limit}",
  "chart.limit_below": "alarm under {limit}",
  "chart.personal": "personlig",
  "chart.table": "Vis verdiene som tabell",
  "chart.col.time": "Tidspunkt",
  "chart.col.value": "Verdi",
  "chart.col.status": "Vurdering",
  "chart.legend": "Forklaring",
  "chart.legend.threshold": "Alarmgrense",
  "chart.legend.out": "Utenfor grensen",

  "events.title": "Hendelser i hjemmet",
  "events.intro": "Dør, seng, bevegelse og fall i valgt tidsrom, nyeste først.",
  "events.none": "Ingen hendelser i dette tidsrommet.",
  "events.day_count": "{count} hendelser",
  "events.overview": "Oversikt: {summary}.",
  "events.count": "{label}: {count}",
  "events.door.1": "Dør åpnet",
  "events.door.0": "Dør lukket",
  "events.bed.1": "Gikk til sengs",
  "events.bed.0": "Sto opp av sengen",
  "events.motion.1": "Bevegelse",
  "events.motion.n": "Bevegelse ({count} ganger)",
  "events.fall.1": "Fall registrert",
  "events.fall.0": "Fallsensor tilbakestilt",
  "events.panic.1": "Trygghetsalarmen utløst",
  "events.smoke.1": "Røykvarsler utløst",
  "events.smoke.0": "Røykvarsler stille",
  "events.water.1": "Vannlekkasje",
  "events.water.0": "Vannlekkasje over",
  "events.lane.door": "Dør",
  "events.lane.bed": "Seng",
  "events.lane.motion": "Bevegelse",
  "events.lane.fall": "Fall og alarm",

  "devices.title": "Enheter",
  "devices.none": "Ingen enheter registrert.",
  "devices.col.device": "Enhet",
  "devices.col.battery": "Batteri",
  "devices.col.last_seen": "Sist hørt fra",
  "devices.col.gateway": "Hjemmeenhet",
  "devices.battery_low": "lavt",
  "devices.check.control": "Kontrollvæske {value}",
  "devices.check.alarm_test": "Alarmtest",
  "devices.unknown": "ukjent",
  "devices.never": "aldri",
  "devices.silent": "stille i {duration}",
  "devices.gateway_online": "{id}: tilkoblet",
  "devices.gateway_offline": "{id}: frakoblet",
  "devices.gateway_unknown": "{id}: ingen status",
  "device.blood_pressure": "Blodtrykksmåler",
  "device.pulse_oximeter": "Pulsoksymeter",
  "device.thermometer": "Termometer",
  "device.scale": "Vekt",
  "device.glucose_meter": "Blodsukkerapparat",
  "device.door": "Dørsensor",
  "device.bed": "Sengesensor",
  "device.motion": "Bevegelsessensor",
  "device.fall": "Fallsensor",
  "device.panic": "Trygghetsalarm",
  "device.smoke": "Røykvarsler",
  "device.water": "Vannsensor",
  "device.vibration": "Vibrasjonssensor",
  "device.climate": "Romsensor",
  "device.other": "Enhet",

  "settings.title": "Innstillinger",
  "settings.saved": "Innstillingen er lagret.",
  "settings.language": "Språk",
  "settings.alerting": "Varsel om nye alarmer",
  "settings.alerting_intro": "Nye alarmer vises alltid øverst på skjermen og leses opp av skjermleser. Her velger du lydvarsel og hvilke alarmer som varsles.",
  "settings.sound": "Spill av lyd ved nye alarmer",
  "settings.level": "Varsle om",
  "settings.level.critical": "Bare kritiske alarmer",
  "settings.level.high": "Kritiske og høye alarmer",
  "settings.level.all": "Alle alarmer",
  "settings.test_sound": "Spill av testlyd",
  "settings.sound_state.running": "Lyden er klar.",
  "settings.sound_state.blocked": "Nettleseren har stoppet lyden til du trykker på siden.",

  "time.just_now": "nå nettopp",
  "error.generic": "Noe gikk galt: {detail}",
};

const en = {
  "app.name": "Tryggheim",
  "skip": "Skip to main content",
  "nav.label": "Main menu",
  "nav.patients": "Patients",
  "nav.alarms": "Alarms",
  "nav.settings": "Settings",
  "nav.open_alarms": "{count} unacknowledged",
  "signed_in_as": "Signed in as {name}",
  "sign_out": "Sign out",
  "language.switch": "Norsk (bokmål)",
  "language.switch_label": "Bytt til norsk bokmål",

  "login.title": "Sign in",
  "login.intro": "Sign in with the user the municipality gave you.",
  "login.username": "User name",
  "login.password": "Password",
  "login.submit": "Sign in",
  "login.wrong": "Wrong user name or password.",
  "login.expired": "Your session has expired. Please sign in again.",
  "login.forbidden": "Your user has no access to patients. Sign in as a nurse or coordinator.",
  "login.unreachable": "Cannot reach the platform. Try again in a moment.",
  "login.busy": "Signing in …",

  "connection.connecting": "Connecting …",
  "connection.live": "Live",
  "connection.stale": "Not updating",
  "connection.lost": "Disconnected",
  "connection.updated": "Updated {time}",
  "connection.lost_title": "Not live: the connection to the platform is lost.",
  "connection.stale_title": "Not live: no sign of life from the platform for {seconds} seconds.",
  "connection.since": "What you see may be out of date. Last confirmed up to date at {time}. Trying to reconnect …",
  "connection.never": "What you see may be out of date. Trying to connect …",
  "connection.retry": "Reconnect now",
  "connection.back": "Live again. The view is up to date.",
  "platform.degraded": "Tryggheim has an operational problem: {problems}. New values and alarms may arrive late. Keep in touch with IT on call.",
  "platform.record_store": "the database does not answer",
  "platform.ingest": "no connection to the homes",
  "platform.gateways_offline": "many homes are offline at once",
  "platform.hl7_outbound": "messages to GPs are not being delivered",
  "platform.timeseries": "the charts lag far behind",
  "stale_marker": "May be out of date",

  "patients.title": "My patients",
  "patients.summary": "{count} patients, {alarms} with open alarms. Sorted by urgency: alarms first (critical at the top), then values outside the patient's limits.",
  "patients.list_label": "Patients sorted by urgency",
  "patients.empty": "You have no patients yet.",
  "patients.no_values": "No measurements yet.",
  "patients.measured": "Last measured {time}",
  "patients.more_alarms": "and {count} more",
  "patients.new_top": "The order has changed: {name} is now at the top.",
  "patients.out_of_range": "{count} values outside the limits",

  "vital.bp": "Blood pressure",
  "vital.pulse": "Pulse",
  "vital.spo2": "Oxygen saturation",
  "vital.temp": "Temperature",
  "vital.weight": "Weight",
  "vital.glucose": "Blood glucose",
  "glucose.sample.capillary_whole_blood": "capillary whole blood",
  "glucose.sample.capillary_plasma": "capillary plasma",
  "glucose.sample.venous_whole_blood": "venous whole blood",
  "glucose.sample.venous_plasma": "venous plasma",
  "glucose.sample.arterial_whole_blood": "arterial whole blood",
  "glucose.sample.arterial_plasma": "arterial plasma",
  "glucose.sample.undetermined_whole_blood": "whole blood, site unknown",
  "glucose.sample.undetermined_plasma": "plasma, site unknown",
  "glucose.sample.interstitial_fluid": "interstitial fluid (sensor)",
  "glucose.sample.not_stated": "sample type not stated",
  "vital.systolic": "Systolic",
  "vital.diastolic": "Diastolic",
  "vital.high": "Above the limit {limit}",
  "vital.low": "Below the limit {limit}",
  "vital.normal": "Within the limits",
  "vital.none": "no measurement",

  "alarm.state.raised": "New",
  "alarm.state.acknowledged": "Acknowledged",
  "alarm.state.in_progress": "In progress",
  "alarm.state.resolved": "Resolved",
  "alarm.state.closed": "Closed",
  "severity.critical": "Critical",
  "severity.high": "High",
  "severity.medium": "Medium",
  "severity.low": "Low",
  "alarm.badge": "{severity}: {alarm}",
  "alarm.raised": "Raised {time}",
  "alarm.measured": "Measured {value}",
  "alarm.device": "Device {device}",
  "alarm.acknowledged_by": "Acknowledged by {who} at {time}",
  "alarm.you": "you",
  "alarm.escalated": "Escalated to level {level}",
  "alarm.note": "Note: {note}",
  "alarm.acknowledge": "Acknowledge",
  "alarm.start": "Take it",
  "alarm.resolve": "Mark as resolved",
  "alarm.close": "Close the alarm",
  "alarm.note_label": "What was found and done? (required)",
  "alarm.note_missing": "Write what was found and done before marking the alarm resolved.",
  "alarm.done.acknowledge": "The alarm {alarm} for {patient} is acknowledged.",
  "alarm.done.start": "You have taken it: {alarm} for {patient}.",
  "alarm.done.resolve": "The alarm {alarm} for {patient} is resolved.",
  "alarm.done.close": "The alarm {alarm} for {patient} is closed.",
  "alarm.conflict": "Someone else has already changed this alarm. The view is updated.",
  "alarm.failed": "That did not work: {detail}",

  "alarms.title": "Alarms",
  "alarms.intro": "Alarms of your patients. The most urgent are at the top: new before acknowledged, critical before lower.",
  "alarms.show": "Show",
  "alarms.show_open": "Open",
  "alarms.show_all": "All recent",
  "alarms.empty": "No open alarms.",
  "alarms.empty_all": "No alarms.",
  "alarms.list_label": "Alarms sorted by urgency",

  "new_alarms.title": "New alarm",
  "new_alarms.item": "{severity} alarm: {alarm} for {patient}",
  "new_alarms.announce": "New {severity} alarm: {alarm} for {patient}.",
  "new_alarms.open": "Open alarms",
  "new_alarms.dismiss": "Hide this notice",
  "new_alarms.sound_blocked": "Alarm sound is on, but the browser has stopped it. Tap anywhere on the page to turn it on.",

  "patient.back": "All patients",
  "patient.not_found": "Patient not found.",
  "patient.gp": "GP: {name}",
  "patient.alarms": "Alarms",
  "patient.no_open_alarms": "No open alarms.",
  "patient.recent_alarms": "Earlier alarms",
  "patient.trends": "Measurements over time",
  "patient.range": "Time range",
  "patient.range.1d": "Last 24 hours",
  "patient.range.7d": "7 days",
  "patient.range.30d": "30 days",
  "patient.range.90d": "90 days",
  "patient.no_measurements": "No measurements in this time range.",
  "patient.truncated": "Showing the newest {count} values.",
  "patient.loading": "Loading …",

  "chart.summary": "{count} measurements from {from} to {to}. Latest: {last}. Lowest {min}, highest {max}.",
  "chart.summary_bp": "{count} measurements from {from} to {to}. Latest: {last}. Systolic {sys}, diastolic {dia}.",
  "chart.thresholds": "Limits: {list}.",
  "chart.no_thresholds": "No limits for this measurement.",
  "chart.limit_above": "alarm above {limit}",
  "chart.limit_below": "alarm below {limit}",
  "chart.personal": "personal",
  "chart.table": "Show the values as a table",
  "chart.col.time": "Time",
  "chart.col.value": "Value",
  "chart.col.status": "Assessment",
  "chart.legend": "Legend",
  "chart.legend.threshold": "Alarm limit",
  "chart.legend.out": "Outside the limit",

  "events.title": "Events in the home",
  "events.intro": "Door, bed, motion and falls in the chosen time range, newest first.",
  "events.none": "No events in this time range.",
  "events.day_count": "{count} events",
  "events.overview": "Overview: {summary}.",
  "events.count": "{label}: {count}",
  "events.door.1": "Door opened",
  "events.door.0": "Door closed",
  "events.bed.1": "Went to bed",
  "events.bed.0": "Got out of bed",
  "events.motion.1": "Motion",
  "events.motion.n": "Motion ({count} times)",
  "events.fall.1": "Fall detected",
  "events.fall.0": "Fall sensor reset",
  "events.panic.1": "Panic button pressed",
  "events.smoke.1": "Smoke alarm",
  "events.smoke.0": "Smoke alarm quiet",
  "events.water.1": "Water leak",
  "events.water.0": "Water leak over",
  "events.lane.door": "Door",
  "events.lane.bed": "Bed",
  "events.lane.motion": "Motion",
  "events.lane.fall": "Fall and alarm",

  "devices.title": "Devices",
  "devices.none": "No devices registered.",
  "devices.col.device": "Device",
  "devices.col.battery": "Battery",
  "devices.col.last_seen": "Last heard from",
  "devices.col.gateway": "Home gateway",
  "devices.battery_low": "low",
  "devices.check.control": "Control solution {value}",
  "devices.check.alarm_test": "Alarm test",
  "devices.unknown": "unknown",
  "devices.never": "never",
  "devices.silent": "silent for {duration}",
  "devices.gateway_online": "{id}: online",
  "devices.gateway_offline": "{id}: offline",
  "devices.gateway_unknown": "{id}: no status",
  "device.blood_pressure": "Blood pressure monitor",
  "device.pulse_oximeter": "Pulse oximeter",
  "device.thermometer": "Thermometer",
  "device.scale": "Scale",
  "device.glucose_meter": "Glucose meter",
  "device.door": "Door sensor",
  "device.bed": "Bed sensor",
  "device.motion": "Motion sensor",
  "device.fall": "Fall sensor",
  "device.panic": "Panic button",
  "device.smoke": "Smoke alarm",
  "device.water": "Water sensor",
  "device.vibration": "Vibration sensor",
  "device.climate": "Room sensor",
  "device.other": "Device",

  "settings.title": "Settings",
  "settings.saved": "The setting is saved.",
  "settings.language": "Language",
  "settings.alerting": "Notice of new alarms",
  "settings.alerting_intro": "New alarms are always shown at the top of the screen and read out by screen readers. Here you choose the alarm sound and which alarms give notice.",
  "settings.sound": "Play a sound for new alarms",
  "settings.level": "Give notice of",
  "settings.level.critical": "Critical alarms only",
  "settings.level.high": "Critical and high alarms",
  "settings.level.all": "All alarms",
  "settings.test_sound": "Play a test sound",
  "settings.sound_state.running": "The sound is ready.",
  "settings.sound_state.blocked": "The browser has stopped the sound until you tap the page.",

  "time.just_now": "just now",
  "error.generic": "Something went wrong: {detail}",
};

// Alarm codes (gateway/alarms/codes.py, docs/alarms.md) in both languages.
const ALARMS = {
  nb: {
    TRY_ALM_SPO2_LOW: "Lav oksygenmetning",
    TRY_ALM_SYSTOLIC_HIGH: "Høyt blodtrykk",
    TRY_ALM_SYSTOLIC_LOW: "Lavt blodtrykk",
    TRY_ALM_PULSE_HIGH: "Høy puls",
    TRY_ALM_PULSE_LOW: "Lav puls",
    TRY_ALM_TEMPERATURE_HIGH: "Feber",
    TRY_ALM_GLUCOSE_LOW: "Lavt blodsukker",
    TRY_ALM_GLUCOSE_HIGH: "Høyt blodsukker",
    TRY_ALM_WEIGHT_GAIN: "Vektøkning",
    TRY_ALM_MEASUREMENT_MISSED: "Måling ikke tatt",
    TRY_ALM_INACTIVITY: "Ingen bevegelse",
    TRY_ALM_DOOR_AT_NIGHT: "Dør åpnet om natten",
    TRY_ALM_FALL: "Fall",
    TRY_ALM_PANIC: "Trygghetsalarm",
    TRY_ALM_SMOKE: "Røyk",
    TRY_ALM_WATER_LEAK: "Vannlekkasje",
    TRY_ALM_DEVICE_SILENT: "Enhet har ikke meldt seg",
    TRY_ALM_LOW_BATTERY: "Lavt batteri",
    TRY_ALM_GATEWAY_OFFLINE: "Hjemmeenheten er frakoblet",
    TRY_ALM_COMBINED: "Kombinert regel",
  },
  en: {
    TRY_ALM_SPO2_LOW: "Low oxygen saturation",
    TRY_ALM_SYSTOLIC_HIGH: "High blood pressure",
    TRY_ALM_SYSTOLIC_LOW: "Low blood pressure",
    TRY_ALM_PULSE_HIGH: "High pulse",
    TRY_ALM_PULSE_LOW: "Low pulse",
    TRY_ALM_TEMPERATURE_HIGH: "Fever",
    TRY_ALM_GLUCOSE_LOW: "Low blood glucose",
    TRY_ALM_GLUCOSE_HIGH: "High blood glucose",
    TRY_ALM_WEIGHT_GAIN: "Weight gain",
    TRY_ALM_MEASUREMENT_MISSED: "Measurement missed",
    TRY_ALM_INACTIVITY: "No movement",
    TRY_ALM_DOOR_AT_NIGHT: "Door opened at night",
    TRY_ALM_FALL: "Fall",
    TRY_ALM_PANIC: "Panic button",
    TRY_ALM_SMOKE: "Smoke",
    TRY_ALM_WATER_LEAK: "Water leak",
    TRY_ALM_DEVICE_SILENT: "Device silent",
    TRY_ALM_LOW_BATTERY: "Low battery",
    TRY_ALM_GATEWAY_OFFLINE: "Home gateway offline",
    TRY_ALM_COMBINED: "Combined rule",
  },
};

const DICTIONARIES = { nb, en };
export const LANGUAGES = [
  { code: "nb", name: "Norsk (bokmål)" },
  { code: "en", name: "English" },
];

let current = "nb";

export function setLanguage(code) {
  current = DICTIONARIES[code] ? code : "nb";
  document.documentElement.lang = current;
}

export function language() { return current; }

export function t(key, values = {}) {
  const text = DICTIONARIES[current][key] ?? DICTIONARIES.nb[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** The alarm's name in the current language (the API's English display as a fallback). */
export function alarmName(alarm) {
  return ALARMS[current][alarm.code] ?? alarm.display ?? alarm.code;
}

/** Severity as a word, lower case inside a sentence ("Ny kritisk alarm"). */
export function severityWord(severity, { lower = false } = {}) {
  const word = t(`severity.${severity}`);
  return lower ? word.toLocaleLowerCase(current) : word;
}

/** A decimal text from the API with the language's decimal sign; the digits stay as measured. */
export function decimal(text) {
  const value = String(text);
  return current === "nb" ? value.replace(".", ",") : value;
}

/** A number computed here (axis ticks), with at most `digits` decimals. */
export function number(value, digits = 1) {
  return new Intl.NumberFormat(current === "nb" ? "nb-NO" : "en-GB", {
    maximumFractionDigits: digits,
  }).format(value);
}

const pad = (n) => String(n).padStart(2, "0");

/** The time as the patient's device showed it: the API keeps the device's own UTC offset. */
export function deviceTime(iso, { date = true } = {}) {
  const m = String(iso).match(/^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/);
  if (!m) return String(iso);
  const [, year, month, day, hour, minute] = m;
  return date ? `${day}.${month}.${year} ${hour}:${minute}` : `${hour}:${minute}`;
}

/** The device-local calendar day of an API time, as a key and a heading. */
export function deviceDay(iso) {
  const m = String(iso).match(/^(\d{4})-(\d{2})-(\d{2})/);
  const key = m ? `${m[1]}-${m[2]}-${m[3]}` : String(iso);
  const when = new Date(`${key}T12:00:00Z`);
  const weekday = new Intl.DateTimeFormat(current === "nb" ? "nb-NO" : "en-GB", {
    weekday: "long", timeZone: "UTC",
  }).format(when);
  const label = m ? `${weekday} ${m[3]}.${m[2]}.${m[1]}` : key;
  return { key, label: label.charAt(0).toLocaleUpperCase(current) + label.slice(1) };
}

/** A moment on this tablet's clock (alarm times, "updated at"). */
export function clock(dateOrIso, { seconds = false, date = false } = {}) {
  const when = dateOrIso instanceof Date ? dateOrIso : new Date(dateOrIso);
  const time = `${pad(when.getHours())}:${pad(when.getMinutes())}${seconds ? `:${pad(when.getSeconds())}` : ""}`;
  if (!date) return time;
  return `${pad(when.getDate())}.${pad(when.getMonth() + 1)}.${when.getFullYear()} ${time}`;
}

/** "5 min ago" / "for 5 min siden". */
export function ago(dateOrIso, now = Date.now()) {
  const then = (dateOrIso instanceof Date ? dateOrIso : new Date(dateOrIso)).getTime();
  const seconds = Math.round((then - now) / 1000);
  if (Math.abs(seconds) < 45) return t("time.just_now");
  const format = new Intl.RelativeTimeFormat(current === "nb" ? "nb-NO" : "en-GB", {
    numeric: "always", style: "short",
  });
  for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return format.format(seconds, "second");
}

/** A length of time: "2 d", "5 h", "12 min". */
export function duration(ms) {
  const minutes = Math.max(1, Math.round(ms / 60000));
  const unit = (value, name) => new Intl.NumberFormat(current === "nb" ? "nb-NO" : "en-GB", {
    style: "unit", unit: name, unitDisplay: "long",
  }).format(value);
  if (minutes >= 2 * 1440) return unit(Math.floor(minutes / 1440), "day");
  if (minutes >= 120) return unit(Math.floor(minutes / 60), "hour");
  return unit(minutes, "minute");
}

/** Texts of a screen kept in its own module (session.js, careplan.js, admin.js). */
export function addTexts(texts) {
  for (const [code, entries] of Object.entries(texts)) Object.assign(DICTIONARIES[code], entries);
}
