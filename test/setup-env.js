// The AWS SDK warns, on Node 20, that later releases need Node 22 — once per process, and tests start many
// processes. The warning is for operators (docs/image-and-compose.md says to run Node 22 in production);
// in tests it is noise. Child processes inherit it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
