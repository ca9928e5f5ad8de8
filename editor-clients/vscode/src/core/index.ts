export * from "./protocol";
export * from "./api";
export * from "./runs";
export * from "./edits";
export * from "./apply";
export * from "./config";
export * from "./runsView";
