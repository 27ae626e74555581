const USAGE = `usage: tdb <command> [options]

commands:
  generate   --model DIR|NAME --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--seed S]
  serve      [--model DIR|NAME] [--port 8000]`;

export async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  if (command === undefined || command === "--help" || command === "-h") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  console.error(`tdb: unknown command '${command}'\n${USAGE}`);
  return 2;
}
