// Node-RED settings for the peer of bench/ingest.py, which runs
//   node red.js --settings bench/nodered/settings.js --userDir <tmp> <tmp>/flow.json
// with a copy of flow.json and a plain-text flow_cred.json in the temporary userDir.

// node-red-contrib-influxdb (InfluxDB 2.x mode) posts one request per MQTT message through
// Node's global HTTP agent, which has no socket limit: with a backlog it opens thousands of
// connections and VictoriaMetrics runs out of open files, losing data. Cap it, as a user who
// ran this flow in production would have to.
require("http").globalAgent.maxSockets = 64;

// The durable flow's SQLite driver, installed beside Node-RED (bench/nodered/package.json) and
// handed to its function node as a global (function nodes cannot require()).
const path = require("path");
const Database = require(
    require.resolve("better-sqlite3", { paths: [path.dirname(require.main.filename)] })
);

module.exports = {
    uiHost: "127.0.0.1",
    // The flow comes from a file: no editor, no HTTP-in nodes.
    httpAdminRoot: false,
    httpNodeRoot: false,
    // The bench writes the broker password and the token into a temporary userDir.
    credentialSecret: false,
    // Errors (such as failed writes) are still logged, per-message noise is not.
    logging: { console: { level: "warn", metrics: false, audit: false } },
    // Run only what bench/nodered/package.json pins; never install anything at run time.
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    functionExternalModules: false,
    functionGlobalContext: { Database },
    telemetry: { enabled: false, updateNotification: false },
};
