/**
 * Small corpora shipped inside the package, so `--corpus builtin:tiny` works offline and in tests. The text was
 * written for this project (no third-party rights): short documents of different kinds — prose, dialogue, lists,
 * numbers, code — so that different components find different top examples.
 */
const TINY_DOCUMENTS: readonly string[] = [
  `The lighthouse stood at the end of a long stone pier. Every evening at dusk the keeper climbed the ninety-two steps, trimmed the wick, and wound the clockwork that turned the lens. Ships far out at sea saw the beam sweep across the water once every twelve seconds, and they knew where the rocks were. In winter the spray froze on the windows, and the keeper scraped the glass with a wooden paddle before the light could shine through. In summer children from the village came to watch the lamp being lit, and the keeper let them count the steps on the way up.`,
  `"Did you bring the map?" asked Mara.
"I thought you had it," said Tom.
"I gave it to you at the station. You put it in your blue bag."
"My blue bag is at home," said Tom. "I brought the green one."
Mara sighed. "Then we will have to ask someone for directions. Do you remember the name of the street?"
"It started with an S," said Tom. "Or maybe a C."
"That narrows it down," said Mara, and they both started laughing.`,
  `Shopping list for Saturday:
- 2 kg of potatoes
- 1 dozen eggs
- 500 g of flour
- 3 lemons
- a bunch of fresh parsley
- 250 g of butter
- 1 litre of milk
- 6 apples (green, not red)
Remember to return the empty bottles and to pick up the parcel from the post office before noon.`,
  `def fibonacci(n):
    """Return the first n Fibonacci numbers."""
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:n]


for i, value in enumerate(fibonacci(10)):
    print(i, value)
`,
  `Monthly rainfall in millimetres, recorded at the hill station: January 112, February 98, March 87, April 64, May 41, June 22, July 15, August 19, September 38, October 77, November 105, December 121. The wettest month was December and the driest was July. The total for the year was 799 millimetres, which is close to the long-term average of 812.`,
  `To make a simple loaf of bread, mix 500 grams of flour with 10 grams of salt and 7 grams of dried yeast. Add 350 millilitres of warm water and stir until a rough dough forms. Knead the dough for ten minutes on a floured table until it is smooth and elastic. Cover the bowl with a cloth and leave it somewhere warm for an hour, until the dough has doubled in size. Shape it into a loaf, let it rise for another thirty minutes, then bake it at 220 degrees for about thirty-five minutes. The loaf is done when it sounds hollow when tapped underneath.`,
  `Alice met Bob at the market on Tuesday. Alice gave Bob a basket of plums, and Bob gave Alice a jar of honey. On Wednesday Bob met Carol at the bakery, and Bob gave Carol the rest of the plums. On Thursday Carol met Alice at the library, and Carol gave Alice a book about bees. When Alice opened the book she found a note from Bob inside it. The note said: thank you for the plums, Alice.`,
  `The committee will meet on the first Monday of each month at 7 pm in the community hall. Members who cannot attend should send their apologies to the secretary by email no later than the Friday before the meeting. Minutes of each meeting will be posted on the notice board and on the website within one week. Proposals for the agenda must be submitted in writing at least ten days in advance. The treasurer will present the accounts at the meeting in March, and the annual general meeting will take place in June.`,
  `Water boils at 100 degrees Celsius at sea level, but at lower temperatures on high mountains, because the air pressure is lower there. At the top of a mountain 5000 metres high, water boils at about 83 degrees. This is why cooking pasta takes longer in the mountains: the water is not as hot, even though it is boiling. A pressure cooker works the other way round. By raising the pressure inside the pot, it lets the water reach about 120 degrees before it boils, so food cooks much faster.`,
  `ERROR 2031-04-11 09:14:02 connection refused (host=db-1, port=5432)
WARN  2031-04-11 09:14:05 retrying in 5 seconds (attempt 1 of 3)
ERROR 2031-04-11 09:14:10 connection refused (host=db-1, port=5432)
WARN  2031-04-11 09:14:15 retrying in 5 seconds (attempt 2 of 3)
INFO  2031-04-11 09:14:20 connected to db-1 on port 5432
INFO  2031-04-11 09:14:21 migration 17 applied in 0.8 seconds`,
  `The old fox lived at the edge of the forest, where the trees gave way to fields of barley. Each night he trotted along the hedge, listening for mice in the stubble. The farmer's dog barked whenever the fox came near the yard, but the fox had learned that the dog was tied to its kennel by a long chain. So the fox sat just beyond the reach of the chain and watched the hens through the fence, and the dog barked until the farmer opened the window and shouted at them both to be quiet.`,
  `One, two, three, four, five, six, seven, eight, nine, ten. Ten, nine, eight, seven, six, five, four, three, two, one. Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday. January, February, March, April, May, June, July, August, September, October, November, December. Red, orange, yellow, green, blue, indigo, violet.`,
];

const builtinCorpora = new Map<string, () => readonly string[]>([["tiny", () => TINY_DOCUMENTS]]);

/** Named corpora: `builtin:<name>` on the command line. Each loads to a list of documents. */
export const BUILTIN_CORPORA: ReadonlyMap<string, () => readonly string[]> = builtinCorpora;

/** Adds a named corpus (for example a demo model's held-out text); a later registration replaces an earlier one. */
export function registerBuiltinCorpus(name: string, load: () => readonly string[]): void {
  if (!/^[\w.-]+$/.test(name))
    throw new Error(`corpus name '${name}' may use only letters, digits, '_', '.', '-'`);
  builtinCorpora.set(name, load);
}
