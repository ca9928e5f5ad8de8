export * from "./protocol";
export * from "./api";
export * from "./runs";
export * from "./edits";
export * from "./apply";
export * from "./config";
export * from "./python";
export * from "./runsView";
