"""Word lists and sentence frames for the demo corpus (shared by make_corpus.py and evaluate.py).

Indirect-object identification (IOI) episodes are an intro frame that mentions two people X and Y, then an action
frame in which the subject S (one of them) gives something to the other, the indirect object IO. Training frames
are composed at random from parts (train_intro, train_action); the HELD_OUT frames never appear in the training
text, so the evaluation templates (held-out intro + held-out action) are unseen as whole sentences and in both
halves.
"""

# (noun, indefinite article)
OBJECTS = [
    ("drink", "a"), ("ball", "a"), ("book", "a"), ("apple", "an"), ("letter", "a"), ("ring", "a"),
    ("key", "a"), ("cake", "a"), ("flower", "a"), ("hat", "a"), ("kite", "a"), ("basket", "a"),
    ("cup", "a"), ("pencil", "a"), ("map", "a"), ("toy", "a"), ("box", "a"), ("coat", "a"),
    ("sandwich", "a"), ("bottle", "a"), ("candle", "a"), ("necklace", "a"), ("bag", "a"), ("pie", "a"),
    ("card", "a"), ("gift", "a"), ("orange", "an"), ("umbrella", "an"), ("egg", "an"), ("picture", "a"),
    ("blanket", "a"), ("lamp", "a"), ("shell", "a"), ("cookie", "a"), ("note", "a"), ("spoon", "a"),
    ("ticket", "a"), ("scarf", "a"), ("drum", "a"), ("pillow", "a"), ("sweater", "a"), ("watch", "a"),
    ("banana", "a"), ("puzzle", "a"), ("feather", "a"), ("stone", "a"), ("leaf", "a"), ("rope", "a"),
]

PLACES = [
    "store", "park", "school", "garden", "library", "beach", "market", "kitchen", "station", "museum",
    "farm", "river", "forest", "hospital", "restaurant", "office", "house", "zoo", "lake", "bakery",
    "village", "castle", "church", "playground", "shop", "cafe", "bridge", "hill", "barn", "harbor",
    "theater", "pool", "field", "city", "town", "hotel", "square", "mountain", "island", "camp",
]

ADJECTIVES = [
    "big", "small", "red", "blue", "green", "old", "new", "happy", "sad", "little", "bright", "quiet",
    "shiny", "soft", "warm", "cold", "yellow", "brown", "kind", "brave", "funny", "tall", "tiny", "pretty",
    "heavy", "strange", "clean", "dark", "wet", "round", "sleepy", "busy", "clever", "gentle", "proud",
]

ANIMALS = [
    "dog", "cat", "bird", "rabbit", "horse", "mouse", "fox", "bear", "duck", "frog", "owl", "lion",
    "sheep", "cow", "pig", "goat", "fish", "turtle", "squirrel", "deer",
]

FOODS = ["soup", "bread", "rice", "cheese", "milk", "tea", "honey", "jam", "pasta", "salad", "fruit", "candy"]

TIMES = [
    "One day", "Once upon a time", "Last summer", "On Monday", "In the morning", "That evening", "Long ago",
    "One winter", "After lunch", "At night", "On a sunny day", "Early one morning", "Last week", "In the spring",
]

FEELINGS = ["happy", "sad", "tired", "excited", "scared", "hungry", "angry", "surprised", "proud", "calm"]

# Held-out intro frames: {X} is mentioned first, {Y} second, {P} is a place; the second string joins the action frame.
HELD_OUT_INTROS = [
    ("Since {X} and {Y} were both at the {P}", ", "),
    ("The day {X} and {Y} went shopping at the {P}", ", "),
    ("After a long walk, {X} and {Y} stopped at the {P}", ". "),
    ("Because {X} and {Y} were hungry at the {P}", ", "),
    ("Last night, {X} and {Y} stayed late at the {P}", ". "),
    ("At the {P}, {X} and {Y} had a long talk", ". "),
    ("On the way to the {P}, {X} and {Y} stopped to rest", ". "),
    ("Soon after {X} and {Y} opened the {P}", ", "),
]

# Held-out action frames: {S} is the subject; {aO} is "a drink"/"an apple", {O} the bare noun; the IO name follows.
HELD_OUT_ACTIONS = [
    "{S} quietly passed {aO} to",
    "{S} picked up the {O} and gave it to",
    "{S} made {aO} for",
    "{S} said goodbye and handed the {O} to",
    "{S} took out {aO} and showed it to",
    "{S} saved the last {O} for",
]

# Compositional training frames: thousands of combinations, so the model must learn the rule rather than the
# frames. Words that characterise the held-out frames (since, because, soon, both, long talk, shopping, stopped,
# rest, opened, last night, on the way, at the, quietly, picked up, took out, said goodbye, made, saved) are kept
# out of these parts.
OPENERS_SUBORDINATE = ["When", "After", "While", "As", "Once", "Before", "Although", "If", "Just as", "Right after"]
OPENERS_MAIN = ["", "Then,", "Yesterday,", "In the morning,", "Later that day,", "One day,", "On Sunday,", "At noon,",
                "Every day,", "That evening,", "Today,", "Last summer,", "In the afternoon,"]
PAIR_VERB_PHRASES = [
    "went to the {P}", "walked to the {P}", "arrived at the {P}", "got to the {P}", "were in the {P}",
    "were working at the {P}", "were playing near the {P}", "left the {P}", "visited the {P}", "cleaned the {P}",
    "reached the {P}", "were waiting outside the {P}", "ran to the {P}", "drove to the {P}",
    "came back from the {P}", "were sitting in the {P}", "spent the day at the {P}", "got home from the {P}",
    "were leaving the {P}", "had lunch near the {P}", "played a game in the {P}", "met in the {P}",
    "were reading in the {P}", "found a {P} nearby", "went into the {P}", "looked around the {P}",
]
PLACE_FIRST_PREPOSITIONS = ["In", "Outside", "Inside", "Near", "Behind", "Beside", "Across from", "Far from"]
PLACE_FIRST_VERB_PHRASES = ["played a game", "ate lunch", "looked around", "sat down", "read books", "sang a song",
                            "waited", "laughed a lot", "were busy", "took a break", "met again", "had fun"]
ONE_TO_OTHER = ["{X} invited {Y} to the {P}", "{X} met {Y} at the {P}", "{X} visited {Y} near the {P}",
                "{X} called {Y} from the {P}", "{X} saw {Y} in the {P}", "{X} followed {Y} into the {P}"]
ADVERBS = ["", "", "", "then ", "happily ", "slowly ", "finally ", "kindly ", "later ", "gladly "]
GIVE_TO = ["gave {aO} to", "handed the {O} to", "passed the {O} to", "gave the {O} to", "threw the {O} to",
           "sent {aO} to", "brought {aO} to", "showed the {O} to", "offered {aO} to", "lent the {O} to",
           "sold the {O} to", "tossed the {O} to", "returned the {O} to", "carried the {O} over to",
           "decided to give {aO} to", "wanted to give {aO} to", "gave the {O} back to", "read the {O} to",
           "mailed {aO} to", "brought the {O} back to"]
GIVE_FOR = ["bought {aO} for", "found {aO} for", "kept the {O} for", "wrapped {aO} for", "cooked {aO} for",
            "built {aO} for", "painted {aO} for", "fixed the {O} for", "chose {aO} for", "left {aO} for"]
FIRST_VERBS = ["found", "grabbed", "washed", "wrapped", "fixed", "carried", "bought", "cleaned", "painted"]
SECOND_VERBS = ["gave it to", "handed it to", "passed it to", "sent it to", "brought it to", "threw it to",
                "tossed it to", "offered it to"]
BEFORE_GIVING = ["smiled", "stood up", "laughed", "nodded", "waved", "sat down", "turned around"]
# IOI-like episodes with other verbs: the subject acts on the other person.
RELATIONS = ["smiled at", "waved to", "looked at", "called", "hugged", "thanked", "helped", "waited for",
             "sat next to", "talked to", "laughed with", "wrote to", "listened to", "said hello to", "ran after",
             "sang to", "pointed at", "walked with", "played with", "danced with"]


# Extra parts for the fine-tuning stage (make_corpus.py --variant finetune): more everyday verbs, openers and
# place-first phrases, so the rule is learnt over more surface forms. The held-out frames' distinctive words above
# stay out of these too (checked by check_parts()).
EXTRA_OPENERS_SUBORDINATE = ["Whenever", "The moment", "By the time", "Now that", "Even though", "Each time",
                             "Just after", "Until", "The minute", "Every time"]
EXTRA_OPENERS_MAIN = ["After a short nap,", "After a big lunch,", "Before dinner,", "Late in the evening,",
                      "Early in the day,", "During the storm,", "After school,", "On a cold morning,",
                      "After a busy week,", "In the end,", "Around noon,", "That morning,"]
EXTRA_PAIR_VERB_PHRASES = [
    "sat down in the {P}", "hurried to the {P}", "went for a walk to the {P}", "were together in the {P}",
    "took a trip to the {P}", "climbed up to the {P}", "went swimming near the {P}", "were painting the {P}",
    "shared a table in the {P}", "ate dinner in the {P}", "went back to the {P}", "were talking in the {P}",
    "got lost near the {P}", "were looking for the {P}", "had a picnic by the {P}", "sat by the {P}",
    "stayed in the {P}", "worked all day in the {P}", "waited for a bus near the {P}", "went to see the {P}",
    "were invited to the {P}", "danced in the {P}", "were sleepy in the {P}", "got tired in the {P}",
    "went camping by the {P}", "found each other in the {P}", "were happy in the {P}",
]
EXTRA_PLACE_FIRST = ["Next to the {P}", "Around the {P}", "Down by the {P}", "In front of the {P}",
                     "Close to the {P}", "Right outside the {P}", "Just past the {P}", "Deep inside the {P}",
                     "Halfway to the {P}", "On the road to the {P}", "Up the hill from the {P}",
                     "On their trip to the {P}", "Back from the {P}", "Walking to the {P}", "Later, in the {P}",
                     "After the {P}", "By the {P}", "All day in the {P}", "Along the path to the {P}"]
EXTRA_PLACE_FIRST_VERB_PHRASES = [
    "took a nap", "went for a swim", "ate some fruit", "found a bench", "had a chat", "drew pictures",
    "told stories", "fed the ducks", "counted the stars", "sat in the sun", "played cards", "watched the birds",
    "talked for hours", "shared a snack", "walked slowly", "drank some tea", "had a nice lunch", "sat to eat",
    "stood to wait", "paused to look around", "sat down to read", "went in to buy bread", "had a big meal",
]
EXTRA_GIVE_TO = ["slid the {O} over to", "gently handed the {O} to", "held out {aO} to", "reached over and gave {aO} to",
                 "pulled out {aO} and handed it to", "took the {O} and gave it to", "lifted the {O} and passed it to",
                 "got {aO} and brought it to", "delivered {aO} to", "handed over the {O} to", "rolled the {O} to",
                 "kicked the {O} to", "served {aO} to", "wrote a note and gave it to", "sent the {O} over to",
                 "showed {aO} to", "brought out {aO} and showed it to", "gave the last {O} to", "lent {aO} to"]
EXTRA_GIVE_FOR = ["baked {aO} for", "set aside {aO} for", "got {aO} for", "prepared {aO} for", "drew {aO} for",
                  "sewed {aO} for", "knitted {aO} for", "grew {aO} for", "poured {aO} for", "cut {aO} for",
                  "carved {aO} for", "ordered {aO} for", "brought home {aO} for", "kept the best {O} for",
                  "put aside the {O} for", "held on to the {O} for", "wrapped up the {O} for"]
EXTRA_FIRST_VERBS = ["lifted", "took", "held", "got", "wiped", "filled", "polished", "folded", "checked", "packed",
                     "brought out", "reached for", "looked at"]
EXTRA_SECOND_VERBS = ["showed it to", "gave it back to", "handed it over to", "lent it to", "sold it to",
                      "mailed it to", "read it to", "slid it to"]
EXTRA_BEFORE_GIVING = ["stood still", "looked around", "thought for a moment", "took a deep breath", "stretched",
                       "smiled warmly", "got up", "shrugged", "whispered something", "said hello",
                       "sat up", "walked over"]
HELD_OUT_WORDS = ["since", "because", "soon", "both", "long talk", "shopping", "stopped", "rest", "opened",
                  "last night", "on the way", "at the {p}", "quietly", "picked up", "took out", "said goodbye",
                  "made", "saved"]


def check_parts() -> None:
    """The fine-tuning parts never contain a held-out frame's distinctive words."""
    parts = (EXTRA_OPENERS_SUBORDINATE + EXTRA_OPENERS_MAIN + EXTRA_PAIR_VERB_PHRASES + EXTRA_PLACE_FIRST
             + EXTRA_PLACE_FIRST_VERB_PHRASES + EXTRA_GIVE_TO + EXTRA_GIVE_FOR + EXTRA_FIRST_VERBS
             + EXTRA_SECOND_VERBS + EXTRA_BEFORE_GIVING)
    for part in parts:
        for banned in HELD_OUT_WORDS:
            if banned in part.lower():  # substrings too: "rested" would leak "rest"
                raise ValueError(f"fine-tuning part {part!r} contains held-out word {banned!r}")


def train_intro(rng, extended: bool = False) -> tuple[str, str]:
    """A random training intro frame (with {X}, {Y}, {P}) and its joiner; never a held-out frame."""
    subordinate = OPENERS_SUBORDINATE + (EXTRA_OPENERS_SUBORDINATE if extended else [])
    main = OPENERS_MAIN + (EXTRA_OPENERS_MAIN if extended else [])
    verbs = PAIR_VERB_PHRASES + (EXTRA_PAIR_VERB_PHRASES if extended else [])
    place_first = [f"{prep} the {{P}}" for prep in PLACE_FIRST_PREPOSITIONS] + (EXTRA_PLACE_FIRST if extended else [])
    place_verbs = PLACE_FIRST_VERB_PHRASES + (EXTRA_PLACE_FIRST_VERB_PHRASES if extended else [])
    while True:
        roll = rng.random()
        if roll < (0.4 if extended else 0.45):
            opener = rng.choice(subordinate)
            frame, joiner = f"{opener} {{X}} and {{Y}} {rng.choice(verbs)}", ", "
        elif roll < (0.65 if extended else 0.75):
            opener = rng.choice(main)
            frame, joiner = f"{opener} {{X}} and {{Y}} {rng.choice(verbs)}".lstrip(), ". "
        elif roll < 0.9:
            frame, joiner = f"{rng.choice(place_first)}, {{X}} and {{Y}} {rng.choice(place_verbs)}", ". "
        else:
            frame, joiner = rng.choice(ONE_TO_OTHER), ". "
        if (frame, joiner) not in HELD_OUT_INTROS:
            return frame, joiner


def train_action(rng, extended: bool = False) -> str:
    """A random training action frame ({S}, {O}, {aO}) that ends right before the indirect object."""
    give_to = GIVE_TO + (EXTRA_GIVE_TO if extended else [])
    give_for = GIVE_FOR + (EXTRA_GIVE_FOR if extended else [])
    first_verbs = FIRST_VERBS + (EXTRA_FIRST_VERBS if extended else [])
    second_verbs = SECOND_VERBS + (EXTRA_SECOND_VERBS if extended else [])
    before = BEFORE_GIVING + (EXTRA_BEFORE_GIVING if extended else [])
    while True:
        roll = rng.random()
        adverb = rng.choice(ADVERBS)
        if roll < (0.5 if extended else 0.55):
            frame = f"{{S}} {adverb}{rng.choice(give_to)}"
        elif roll < 0.7:
            frame = f"{{S}} {adverb}{rng.choice(give_for)}"
        elif roll < 0.85:
            frame = f"{{S}} {adverb}{rng.choice(first_verbs)} the {{O}} and {rng.choice(second_verbs)}"
        else:
            frame = f"{{S}} {rng.choice(before)} and {rng.choice(give_to)}"
        if frame not in HELD_OUT_ACTIONS:
            return frame


# Double-object variants used in training only ("Mary gave John a drink"): the IO is predicted after the verb.
TRAIN_DOUBLE_OBJECT_ACTIONS = ["{S} gave", "{S} handed", "{S} showed", "{S} sent", "{S} offered", "{S} brought"]
