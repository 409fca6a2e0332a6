// Validate a .glb/.gltf with the Khronos glTF validator; prints the JSON report, exits 1 on errors.
const fs = require("fs");
const validator = require("gltf-validator");
const path = process.argv[2];
validator.validateBytes(new Uint8Array(fs.readFileSync(path)), { maxIssues: 100 })
  .then((report) => {
    console.log(JSON.stringify(report.issues));
    process.exit(report.issues.numErrors > 0 ? 1 : 0);
  })
  .catch((error) => { console.error(String(error)); process.exit(2); });
