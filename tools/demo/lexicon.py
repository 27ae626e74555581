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


def train_intro(rng) -> tuple[str, str]:
    """A random training intro frame (with {X}, {Y}, {P}) and its joiner; never a held-out frame."""
    while True:
        roll = rng.random()
        if roll < 0.45:
            opener = rng.choice(OPENERS_SUBORDINATE)
            frame, joiner = f"{opener} {{X}} and {{Y}} {rng.choice(PAIR_VERB_PHRASES)}", ", "
        elif roll < 0.75:
            opener = rng.choice(OPENERS_MAIN)
            frame, joiner = f"{opener} {{X}} and {{Y}} {rng.choice(PAIR_VERB_PHRASES)}".lstrip(), ". "
        elif roll < 0.9:
            prep = rng.choice(PLACE_FIRST_PREPOSITIONS)
            frame, joiner = f"{prep} the {{P}}, {{X}} and {{Y}} {rng.choice(PLACE_FIRST_VERB_PHRASES)}", ". "
        else:
            frame, joiner = rng.choice(ONE_TO_OTHER), ". "
        if (frame, joiner) not in HELD_OUT_INTROS:
            return frame, joiner


def train_action(rng) -> str:
    """A random training action frame ({S}, {O}, {aO}) that ends right before the indirect object."""
    while True:
        roll = rng.random()
        adverb = rng.choice(ADVERBS)
        if roll < 0.55:
            frame = f"{{S}} {adverb}{rng.choice(GIVE_TO)}"
        elif roll < 0.7:
            frame = f"{{S}} {adverb}{rng.choice(GIVE_FOR)}"
        elif roll < 0.85:
            frame = f"{{S}} {adverb}{rng.choice(FIRST_VERBS)} the {{O}} and {rng.choice(SECOND_VERBS)}"
        else:
            frame = f"{{S}} {rng.choice(BEFORE_GIVING)} and {rng.choice(GIVE_TO)}"
        if frame not in HELD_OUT_ACTIONS:
            return frame


# Double-object variants used in training only ("Mary gave John a drink"): the IO is predicted after the verb.
TRAIN_DOUBLE_OBJECT_ACTIONS = ["{S} gave", "{S} handed", "{S} showed", "{S} sent", "{S} offered", "{S} brought"]
