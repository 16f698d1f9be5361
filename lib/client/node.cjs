"use strict";
// package.json sends `import "mq"` and `require("mq")` here on every runtime but Bun (its
// "bun" condition picks index.ts). The library is TypeScript on Bun.connect: docs/library.md.
throw new Error(
  "mq: the mq client library needs the Bun runtime (https://bun.sh); it does not run under Node. Run this program with `bun` instead of `node` (see docs/library.md in the mq package).",
);
// Never reached. Named exports (the runtime ones of index.ts) let `import { connect } from "mq"`
// get as far as the error above instead of failing to link with "Named export not found".
exports.connect = exports.MqClient = exports.Message = exports.MqError = exports.Code = exports.isCode = undefined;
