export async function serveCommand(_argv: string[]): Promise<number> {
  console.error("tdb serve: the activation server is not built yet");
  return 1;
}
