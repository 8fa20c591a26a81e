// The alarm sound: three short tones made with the Web Audio API (no sound file to fetch).
// Browsers keep audio suspended until the user has touched the page; `unlockSound` is called
// on the first touch, key press or the sign-in, and the app tells the nurse when the sound is
// on but blocked. <html data-alarm-sounds> counts the sounds played (the tests read it).

let context = null;
let played = 0;
let onChange = () => {};

function audio() {
  if (!context) {
    const Context = window.AudioContext ?? window.webkitAudioContext;
    if (!Context) return null;
    context = new Context();
    context.addEventListener("statechange", () => onChange(soundState()));
  }
  return context;
}

/** Call `listener(state)` whenever the browser blocks or allows the sound (the app shows it). */
export function watchSound(listener) {
  onChange = listener;
}

export function unlockSound() {
  const ctx = audio();
  if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
}

/** "running", "blocked" (suspended until the user touches the page) or "unavailable". */
export function soundState() {
  const ctx = context ?? audio();
  if (!ctx) return "unavailable";
  return ctx.state === "running" ? "running" : "blocked";
}

/** Play the alarm sound; whether the browser let it play. */
export async function playAlarmSound() {
  const ctx = audio();
  if (!ctx) return false;
  if (ctx.state === "suspended") {
    // Without a user gesture resume() may never settle: wait a moment, not for ever.
    await Promise.race([ctx.resume().catch(() => {}), new Promise((r) => setTimeout(r, 300))]);
  }
  const start = ctx.currentTime + 0.02;
  [880, 660, 880].forEach((frequency, i) => {
    const at = start + i * 0.28;
    const oscillator = ctx.createOscillator();
    const gain = ctx.createGain();
    oscillator.type = "square";
    oscillator.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.22);
    oscillator.connect(gain).connect(ctx.destination);
    oscillator.start(at);
    oscillator.stop(at + 0.24);
  });
  const running = ctx.state === "running";
  if (running) {
    played += 1;
    document.documentElement.dataset.alarmSounds = String(played);
  }
  return running;
}
