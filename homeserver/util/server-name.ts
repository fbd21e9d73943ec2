// A permissive server-name check for configuration (the strict grammar lives in spec/identifiers.ts).
export function isValidServerNameLoose(name: string): boolean {
  if (name.length === 0 || name.length > 255) return false;
  const m = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(:\d{1,5})?$/.exec(name);
  if (!m) return false;
  if (m[2] && Number(m[2].slice(1)) > 65535) return false;
  return true;
}
