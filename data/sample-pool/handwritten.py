"""Hand-written text for the sample pool, written for this project (same licence as the project).

``build.py`` turns these into records. Nothing here is copied from elsewhere;
the deliberately bad items are labelled with the kind of problem they plant.
"""

# --------------------------------------------------------------------------- LIMA-style, good
# Each item: turns alternate user/assistant; optional "system".

LIMA_GOOD = [
    {"conversations": [
        "When should I use a tuple instead of a list in Python?",
        """Use a **tuple** when the collection is a fixed record and a **list** when it is a growing or changing sequence of similar things.

**Reach for a tuple when**

- the position means something: `(latitude, longitude)`, `(name, age, email)`;
- the value must be hashable, for example as a dictionary key or a set member: `distances[("Paris", "Rome")] = 1105`;
- you return several values from a function: `return total, count`;
- you want to signal "this does not change" to the reader.

**Reach for a list when**

- you will append, remove or sort items;
- every item plays the same role, like a list of file names or scores;
- the length is not known in advance.

A quick rule of thumb: if you would describe the thing as "a pair" or "a triple", it is a tuple; if you would describe it as "some items", it is a list.

```python
point = (3, 4)             # a record: x then y
names = ["ada", "grace"]   # a collection that may grow
names.append("linus")
```

Performance differences are small (tuples are slightly smaller and faster to create), so let the meaning decide, not speed.""",
    ]},
    {"conversations": [
        "What is the difference between `is` and `==` in Python?",
        """`==` asks **"do these two objects have equal values?"** and calls the object's `__eq__` method. `is` asks **"are these the very same object in memory?"** and cannot be customised.

```python
a = [1, 2, 3]
b = [1, 2, 3]
a == b    # True: same contents
a is b    # False: two separate lists
c = a
c is a    # True: two names for one list
```

Use `is` only for identity checks against singletons, above all `None`:

```python
if result is None:
    ...
```

Avoid `is` for numbers and strings. `x is 1000` may be true or false depending on how the interpreter caches objects, and recent Python versions warn about `is` with a literal. Compare values with `==`.""",
    ]},
    {"conversations": [
        "Explain recursion with a simple example, and tell me when to avoid it.",
        """A recursive function solves a problem by calling itself on a smaller version of the same problem, until it reaches a case small enough to answer directly (the **base case**).

Summing a list, recursively:

```python
def total(xs):
    if not xs:              # base case: the empty list sums to 0
        return 0
    return xs[0] + total(xs[1:])   # one item plus the sum of the rest
```

`total([2, 3, 4])` becomes `2 + total([3, 4])`, then `2 + 3 + total([4])`, then `2 + 3 + 4 + total([])`, which is `9`.

Recursion shines when the data is itself recursive: trees, nested folders, nested JSON, parsing expressions. Walking a directory tree is natural: handle the files here, then recurse into each sub-folder.

Avoid it when:

- **the depth can be large.** Python has no tail-call optimisation and stops at about 1,000 nested calls by default (`RecursionError`). A loop over a million items must be a loop.
- **subproblems repeat.** Naive recursive Fibonacci recomputes the same values exponentially often; use a loop or memoisation (`functools.cache`).
- **a loop is simply clearer.** Summing a list is clearer as `sum(xs)` or a `for` loop; the example above is for teaching.""",
    ]},
    {"conversations": [
        "How should I lay out a small Python project so that it's easy to test?",
        """A layout that scales from one file to a real package:

```
myproject/
├── pyproject.toml
├── README.md
├── src/
│   └── myproject/
│       ├── __init__.py
│       ├── core.py        # pure logic, no I/O
│       └── cli.py         # argument parsing, printing, files
└── tests/
    ├── test_core.py
    └── test_cli.py
```

What makes it easy to test is less the folders than three habits:

1. **Keep logic pure.** Functions in `core.py` take values and return values. They do not read files, call the network or print. Pure functions are tested with one line each.
2. **Push I/O to the edges.** `cli.py` reads input, calls `core`, writes output. Test it end to end with a temporary directory (`pytest`'s `tmp_path`) rather than mocking everything.
3. **Pass dependencies in.** If a function needs the current time or an HTTP client, accept it as a parameter with a sensible default, so a test can hand in a fixed clock or a fake client.

Then install the package in editable mode (`pip install -e .`) and run `pytest` from the project root. The `src/` folder guarantees your tests import the installed package, not whatever happens to be in the current directory, which catches packaging mistakes early.""",
    ]},
    {"conversations": [
        "Write a haiku about autumn rain.",
        "Cold rain on the roof —\nthe maple lets go its last\nred hand to the ditch.",
    ]},
    {"conversations": [
        "What does 'idempotent' mean for an HTTP API?",
        """An operation is **idempotent** if doing it once or doing it many times leaves the server in the same state.

- `PUT /users/42 {"name": "Ada"}` is idempotent: after one call or five, user 42 is named Ada.
- `DELETE /users/42` is idempotent: after the first call the user is gone, and later calls change nothing (they may return 404, but the state is the same).
- `POST /orders` is usually **not** idempotent: each call creates another order.
- `GET` should be idempotent and also *safe*: it changes nothing at all.

Why it matters: networks fail. If a client sends a request and the connection drops before the response arrives, it cannot know whether the server acted. With an idempotent operation it can simply retry. For non-idempotent operations such as payments, APIs add an **idempotency key**: the client sends a unique ID with the request, and the server remembers it and returns the original result for a repeated key instead of charging twice.""",
    ]},
    {"conversations": [
        "Give me tips for writing good commit messages.",
        """A good commit message lets someone who was not there understand *why* the change was made.

1. **A short summary line** of about 50 characters, in the imperative: "Fix off-by-one in pagination", not "Fixed stuff" or "Fixes".
2. **A blank line**, then a body wrapped at about 72 characters.
3. **Explain why, not how.** The diff shows how. The body should say what was wrong, why this approach, and what alternatives you rejected.
4. **One logical change per commit.** Mixing a refactor with a bug fix makes both hard to review and to revert.
5. **Reference the issue** ("Closes #123") so the discussion is one click away.
6. **Mention side effects**: migrations, changed defaults, anything a reader upgrading would trip over.

Example:

```
Retry uploads once on connection reset

Uploads to the object store fail about 1 in 500 times with
ECONNRESET when the server recycles idle connections. One retry
with a fresh connection fixes every case seen in the logs; more
retries only hid real outages, so we stop at one.

Closes #482
```""",
    ]},
    {"conversations": [
        "Explain Big-O notation using a phone book as the example.",
        """Big-O describes how the work grows as the input grows, ignoring constant factors. Picture a paper phone book with *n* names, sorted alphabetically.

- **O(1), constant:** opening the book to the first page. It takes the same time for 100 names or a million.
- **O(n), linear:** looking for the person whose number is 555-0199. The book is sorted by name, not number, so in the worst case you read every entry. Twice as many names, twice the work.
- **O(log n), logarithmic:** finding "Lovelace". Open in the middle, see "M", discard the second half, open the middle of the first half, and so on. Each step halves what is left, so a million names takes about 20 steps, and doubling the book adds just one more step.
- **O(n log n):** sorting a shuffled pile of n name cards efficiently (merge sort): about log n rounds of merging, each touching all n cards.
- **O(n²), quadratic:** checking whether any two entries share a phone number by comparing every entry with every other. Ten times the names, a hundred times the work.

Big-O is about the shape of growth. An O(n) method can beat an O(log n) one on a tiny input, but as the book gets bigger the better shape always wins.""",
    ]},
    {"conversations": [
        "How do I make a good cup of pour-over coffee?",
        """For one mug (about 300 ml):

**You need:** 18 g of coffee, 300 g of water just off the boil (about 93–96 °C), a dripper with a paper filter, a scale and a timer.

1. **Grind** the coffee medium-fine, about like table salt.
2. **Rinse the filter** with hot water to remove the paper taste and warm the dripper, then pour that water away.
3. **Bloom:** add the coffee, level it, start the timer and pour about 40 g of water to wet all the grounds. Wait 30–45 seconds while it bubbles; this lets carbon dioxide escape so the water can extract evenly.
4. **Pour in stages:** slowly pour in small circles to 150 g by about 1:15, then to 300 g by about 2:00. Keep the stream gentle and avoid pouring straight onto the filter paper.
5. **Let it drain.** The whole brew should finish around 3:00–3:30.

**Adjust by taste:** sour or thin means under-extracted, so grind finer. Bitter or harsh means over-extracted, so grind coarser. Change one thing at a time, and keep the 1:16 ratio of coffee to water as your starting point.""",
    ]},
    {"conversations": [
        "What are the pros and cons of remote work for a junior developer?",
        """**Pros**

- **Focus time.** Fewer interruptions make it easier to get into deep work.
- **No commute**, which returns hours each week for rest or study.
- **A wider choice of employers**, not only the ones within travelling distance.
- **Written communication skills** grow quickly, because so much happens in writing.

**Cons**

- **Less learning by osmosis.** In an office you overhear how seniors debug, negotiate and decide. Remotely, none of that reaches you unless someone makes it visible.
- **Asking for help feels costlier.** Juniors often wait hours rather than "bother" someone on chat, and stay stuck.
- **Visibility.** Good work done quietly can go unnoticed, which matters for feedback and promotions.
- **Isolation** and blurred boundaries between work and home.

**If you do go remote:** ask for a named mentor and regular one-to-ones; agree on a rule such as "if stuck for 30 minutes, ask"; pair-program on calls; write short daily notes of what you did and where you are blocked; and join the team's informal channels. A team that already works well remotely will offer most of this. If it doesn't, that tells you something.""",
    ]},
    {"conversations": [
        "What is a race condition? Show me one.",
        """A race condition is a bug whose outcome depends on the timing of concurrent operations: two threads (or processes) touch shared state, and the result changes with who gets there first.

The classic example is a shared counter:

```python
import threading

count = 0

def work():
    global count
    for _ in range(100_000):
        count += 1      # read, add, write: three steps, not one

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(count)   # expected 400000; may print less
```

`count += 1` reads the value, adds one and writes it back. If thread A reads 10, then thread B reads 10, both write 11, and one increment is lost. Whether you see it depends on when the interpreter switches threads, which is exactly why races are hard to reproduce.

The fix is to make the read-modify-write atomic with a lock:

```python
lock = threading.Lock()

def work():
    global count
    for _ in range(100_000):
        with lock:
            count += 1
```

Or avoid shared mutable state altogether: let each thread compute its own subtotal and add the results at the end.""",
    ]},
    {"conversations": [
        "Summarize the main causes of the French Revolution in one paragraph.",
        "The French Revolution of 1789 grew out of several pressures at once. The monarchy was nearly bankrupt after costly wars, including its support for the American Revolution, and its attempts to raise taxes ran into resistance from the privileged nobility and clergy, who paid little. The burden fell on the Third Estate, the great majority of the population, at a time when poor harvests had driven bread prices sharply up. Enlightenment ideas about popular sovereignty, equality before the law and the limits of royal power gave educated commoners a language for their grievances. When Louis XVI called the Estates-General in 1789 to solve the financial crisis, the Third Estate's representatives declared themselves a National Assembly, and the political crisis became a revolution.",
    ]},
    {"conversations": [
        "How do I politely ask my manager for a raise?",
        """Treat it as a business conversation you have prepared for, not a favour.

1. **Pick the moment.** Ask for a dedicated meeting, ideally a few weeks before budgets or reviews are decided, and not right after bad news for the team.
2. **Bring evidence.** List what you delivered in the past year with its effect: "shipped the billing migration with zero downtime", "took over on-call for two services". Add responsibilities you have picked up since your salary was set.
3. **Know the market.** Check salary surveys and job listings for your role and location, so your number is grounded.
4. **Name a number**, or a narrow range, rather than "a bit more".
5. **Keep it forward-looking.** "I'd like my pay to reflect the scope I'm now working at" works better than comparisons with colleagues.

A possible opening: *"I'd like to talk about my compensation. Over the past year I've taken on X and Y and delivered Z. Based on that and on market rates for this role, I'd like to discuss moving my salary to around N."*

If the answer is "not now", ask what exactly would need to be true for a yes and by when, and agree to revisit on a date. That turns a no into a plan.""",
    ]},
    {"conversations": [
        "Why is the sky blue?",
        """Sunlight contains all visible colours. When it passes through the atmosphere it meets gas molecules, mostly nitrogen and oxygen, that are far smaller than the wavelength of light. Such tiny particles scatter light in all directions, and they scatter short wavelengths much more strongly than long ones: the effect, called **Rayleigh scattering**, goes roughly as 1/wavelength⁴, so blue light (about 450 nm) is scattered several times more than red (about 700 nm).

Look at any part of the sky away from the Sun and you see light that has been scattered toward you, which is dominated by blue.

Two natural follow-up questions:

- **Why not violet**, which is even shorter? Sunlight contains less violet, some is absorbed high in the atmosphere, and our eyes are less sensitive to it, so the mix we perceive is sky blue.
- **Why are sunsets red?** Near the horizon, sunlight crosses much more air before reaching you. Most of the blue is scattered out of the direct beam along the way, leaving the reds and oranges.""",
    ]},
    {"conversations": [
        "Write a Python function to check if a number is prime, and explain how it works.",
        """```python
def is_prime(n: int) -> bool:
    \"\"\"Return True if n is a prime number.\"\"\"
    if n < 2:
        return False
    if n < 4:
        return True            # 2 and 3
    if n % 2 == 0 or n % 3 == 0:
        return False
    i = 5
    while i * i <= n:
        if n % i == 0 or n % (i + 2) == 0:
            return False
        i += 6
    return True
```

How it works:

1. Numbers below 2 are not prime; 2 and 3 are.
2. Multiples of 2 or 3 are ruled out at once.
3. If *n* has a divisor other than 1 and itself, it has one no larger than √n: if n = a × b with both a and b above √n, the product would exceed n. So we only test up to √n, written `i * i <= n` to avoid floating point.
4. Every integer is 6k + r with r between 0 and 5. Those with r = 0, 2, 3 or 4 are divisible by 2 or 3, so any remaining divisor is of the form 6k − 1 or 6k + 1. Starting at `i = 5` and testing `i` and `i + 2` in steps of 6 covers exactly 5, 7, 11, 13, 17, 19, …

```python
>>> [n for n in range(30) if is_prime(n)]
[2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
```

This takes O(√n) steps, fine for numbers up to about 10¹². For very large numbers use a probabilistic test such as Miller–Rabin.""",
    ]},
    {"conversations": [
        "How do I undo my last git commit but keep the changes?",
        """If the commit has **not** been pushed:

```bash
git reset --soft HEAD~1
```

This moves the branch back one commit and leaves the changes **staged**, ready to commit again. If you would rather have them unstaged, so you can pick what to re-add, use:

```bash
git reset HEAD~1      # same as --mixed
```

Either way, your working files are untouched.

If you only want to fix the last commit (a typo in the message, a forgotten file), you don't need to undo it at all:

```bash
git add forgotten_file.py
git commit --amend
```

If the commit **has already been pushed** to a shared branch, don't rewrite history others may have pulled. Create a new commit that reverses it instead:

```bash
git revert HEAD
```

And if you ever reset too far, `git reflog` lists where the branch pointed before, so you can get back with `git reset --hard <hash>`.""",
    ]},
    {"conversations": [
        "What's the difference between TCP and UDP?",
        """Both carry data between programs over IP, but they make very different promises.

| | TCP | UDP |
|---|---|---|
| Connection | set up with a handshake first | none: just send |
| Delivery | guaranteed; lost packets are re-sent | best effort; packets may be lost |
| Order | bytes arrive in order | datagrams may arrive out of order |
| Unit | a continuous byte stream | separate messages (datagrams) |
| Flow and congestion control | yes | no (the application decides) |
| Overhead and latency | higher | lower |

**Use TCP** when every byte must arrive intact and in order: web pages (HTTP/1.1 and HTTP/2), email, file transfer, SSH, database connections.

**Use UDP** when timeliness beats completeness or when the application wants its own rules: live voice and video (a late packet is useless), online games, DNS lookups (one small question, one small answer), and QUIC, the protocol under HTTP/3, which builds reliability on top of UDP in user space to avoid some of TCP's delays.""",
    ]},
    {"conversations": [
        "Can you explain the Monty Hall problem? Why is switching better?",
        """**The setup:** there are three doors. Behind one is a car, behind the other two are goats. You pick a door, say door 1. The host, who *knows* where the car is, opens one of the other doors and always reveals a goat, say door 3. He offers you the chance to switch to door 2. Should you?

**Yes: switching wins 2/3 of the time.**

The key is that the host's choice is not random. Consider your first pick:

- With probability **1/3** you picked the car. The host opens either goat door; switching loses.
- With probability **2/3** you picked a goat. The host *must* open the only other goat door, so the remaining closed door has the car; switching wins.

Switching wins exactly when your first pick was wrong, which happens 2/3 of the time.

**An intuition pump:** imagine 100 doors. You pick one, and the host opens 98 others, all goats, leaving one closed door. Your first pick had a 1% chance; the one door the host carefully avoided holds the other 99%.

The common mistake is to reason "two doors remain, so it's 50/50". That would be true only if the host opened a door at random and happened to show a goat.""",
    ]},
    # ---- multi-turn
    {"conversations": [
        "Give me a regular expression that matches dates like 2024-03-07.",
        """```
^\\d{4}-\\d{2}-\\d{2}$
```

- `^` and `$` anchor the whole string, so `x2024-03-07` does not match.
- `\\d{4}` is the year, `\\d{2}` the month and the day, separated by literal hyphens.

In Python:

```python
import re
ISO_DATE = re.compile(r"^\\d{4}-\\d{2}-\\d{2}$")
bool(ISO_DATE.match("2024-03-07"))   # True
```

This checks the *shape* only: it accepts `2024-13-45`. If you need a real date, parse it: `datetime.date.fromisoformat(s)` raises `ValueError` for impossible dates.""",
        "Can you make it also accept single-digit months and days, like 2024-3-7?",
        """Change `{2}` to `{1,2}` for the month and the day:

```
^\\d{4}-\\d{1,2}-\\d{1,2}$
```

It now matches `2024-3-7`, `2024-03-7` and `2024-03-07`.

If you want to reject obviously impossible values while you are at it, spell out the ranges:

```
^\\d{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12]\\d|3[01])$
```

- month: `0?[1-9]` is 1–9 with an optional leading zero, `1[0-2]` is 10–12;
- day: 1–9, 10–29, 30–31.

It still accepts 2024-2-31, since a regex cannot know month lengths. To normalise and validate in one step, capture the parts and build a date:

```python
m = re.fullmatch(r"(\\d{4})-(\\d{1,2})-(\\d{1,2})", s)
d = datetime.date(*map(int, m.groups())) if m else None   # raises ValueError if impossible
```""",
    ]},
    {"conversations": [
        "I want to get to a conversational level in Spanish in six months. Where do I start?",
        """Six months to conversational is ambitious but realistic if you practise most days. A plan:

**Months 1–2: foundations**
- Learn the 1,000 most frequent words with a spaced-repetition app, 15 minutes a day.
- Work through a beginner course for grammar: present tense, *ser* vs *estar*, questions, the near future (*voy a* + infinitive).
- Listen to slow podcasts for learners daily, even if you catch only part.

**Months 3–4: start speaking**
- Book a tutor or language exchange two or three times a week. Speaking early is uncomfortable and is exactly what gets you to "conversational".
- Add the past tenses (preterite and imperfect).
- Shadow audio: repeat sentences aloud right after the speaker to train pronunciation and rhythm.

**Months 5–6: volume**
- Watch series you enjoy with Spanish subtitles.
- Keep a short daily journal in Spanish and have a tutor correct it weekly.
- Have longer conversations on topics you care about.

Measure progress by what you can *do* ("I can order food and chat about my job for 10 minutes"), not by how many app lessons you have finished.""",
        "Is 30 minutes a day enough?",
        """Thirty focused minutes a day is about 90 hours over six months. That is enough for solid basics and simple conversations on familiar topics, what the European framework calls around A2, but probably not for comfortable conversation with native speakers at full speed, which usually takes a few hundred hours.

To get the most from 30 minutes:

- **Don't spend it all on an app.** Split it, for example 10 minutes of vocabulary, 10 of listening, 10 of speaking or writing.
- **Add "free" time.** Podcasts on the commute, Spanish audio while cooking, switching your phone's language. Passive exposure is not a substitute for practice, but it adds up.
- **Make speaking sessions longer and rarer.** Two one-hour conversations a week count for more than a few minutes of speaking every day.

If you can occasionally do an hour, on weekends for instance, you'll move noticeably faster.""",
    ]},
    {"conversations": [
        "Write a limerick about a cat who hates Mondays.",
        "A tabby named Tom from Dundee\nhated Mondays as much as could be.\nWhen the alarm clock would ring\nhe'd attack the poor thing,\nthen go back to sleep until three.",
        "Now make it about a dog who loves Mondays.",
        "A beagle called Bess from Lahore\nthought Mondays were worth waiting for.\nWhen her family would go\nto their jobs, she would know\nthat the postman brought biscuits at four.",
    ]},
    {"conversations": [
        "How do I read a JSON file in Python?",
        """Use the `json` module with a `with` block, so the file is closed for you:

```python
import json

with open("config.json", encoding="utf-8") as f:
    data = json.load(f)

print(data["name"])
```

- `json.load` reads from a file object; `json.loads` parses a string.
- JSON objects become `dict`, arrays become `list`, `null` becomes `None`, `true`/`false` become `True`/`False`.
- Always give `encoding="utf-8"`: JSON is UTF-8, and the default encoding differs between systems.
- A malformed file raises `json.JSONDecodeError`, whose message includes the line and column.""",
        "What if the file is several gigabytes?",
        """`json.load` builds the whole structure in memory, usually several times the file's size, so a multi-gigabyte file may not fit. Options, best first:

1. **Change the format if you can: JSON Lines.** One JSON object per line lets you stream with the standard library:

   ```python
   with open("events.jsonl", encoding="utf-8") as f:
       for line in f:
           event = json.loads(line)
           handle(event)
   ```

   Memory stays at one record at a time.

2. **Stream-parse an existing big array** with a third-party incremental parser such as `ijson`:

   ```python
   import ijson
   with open("big.json", "rb") as f:
       for item in ijson.items(f, "item"):   # each element of the top-level array
           handle(item)
   ```

3. **Load it into a tool built for this**, such as DuckDB (`SELECT * FROM read_json_auto('big.json')`), and query it instead of loading it into Python objects.

If the data is reused, convert it once to JSON Lines or Parquet, and every later run becomes cheap.""",
    ]},
    {"conversations": [
        "What is an API, in plain words?",
        "An API (application programming interface) is an agreed way for one program to ask another program for something. Like a restaurant menu, it lists what you can order and how to ask for it, and hides how the kitchen works. As long as both sides keep to the menu, either can change its internals without breaking the other.",
        "Give me a concrete example with a weather service.",
        """Say a weather service publishes this API:

```
GET https://api.weather.example/v1/current?city=Lisbon
```

Your program sends that HTTP request, and the service answers with JSON:

```json
{"city": "Lisbon", "temperature_c": 21.5, "condition": "sunny", "updated": "2024-06-01T10:00:00Z"}
```

Everything in that exchange is the API contract:

- the **address** (`/v1/current`) and the **parameter** (`city`);
- the **shape of the answer**: field names, types, units (`temperature_c` is in degrees Celsius);
- the **rules**: perhaps an API key in a header, at most 60 requests a minute, a 404 for unknown cities.

Your weather app doesn't know or care whether the service reads satellite data, runs a forecast model or asks a database. If the provider rewrites all of that, your app keeps working, as long as `/v1/current` still answers in the same shape. When they need to change the shape, they publish `/v2/` and keep `/v1/` running for a while: that is API versioning.""",
    ]},
    {"conversations": [
        "Why does this function return None?\n\n```python\ndef largest(xs):\n    best = xs[0]\n    for x in xs:\n        if x > best:\n            best = x\n    print(best)\n\nresult = largest([3, 9, 2])\n```",
        """Because it never returns anything. `print(best)` shows the value on the screen, but the function's result is whatever follows `return`, and a function that ends without a `return` returns `None`.

Replace the `print` with a `return`:

```python
def largest(xs):
    best = xs[0]
    for x in xs:
        if x > best:
            best = x
    return best

result = largest([3, 9, 2])
print(result)   # 9
```

A useful habit: functions compute and `return`; the caller decides whether to print.""",
        "Got it. What happens if I call it with an empty list?",
        """`xs[0]` fails on an empty list, so you get `IndexError: list index out of range` on the first line of the function.

Decide what "the largest of nothing" should mean for your program, and make it explicit:

```python
def largest(xs):
    if not xs:
        raise ValueError("largest() of an empty list")
    ...
```

or return a default the caller chooses:

```python
def largest(xs, default=None):
    if not xs:
        return default
    ...
```

This is also how the built-in behaves: `max([])` raises `ValueError`, while `max([], default=0)` returns 0. In real code, prefer `max(xs)` over writing the loop yourself.""",
    ]},
    # ---- with a system prompt
    {"system": "You are a concise assistant. Answer in at most three sentences.",
     "conversations": [
        "What is photosynthesis?",
        "Photosynthesis is the process by which plants, algae and some bacteria use light energy to turn carbon dioxide and water into sugar, releasing oxygen as a by-product. It takes place mainly in chloroplasts, where chlorophyll absorbs the light. The sugar fuels the organism and, through food chains, almost all life on Earth.",
    ]},
    {"system": "You are a senior Python reviewer. Point out bugs first, then style, and keep it brief.",
     "conversations": [
        "Please review:\n\n```python\ndef add_item(item, items=[]):\n    items.append(item)\n    return items\n```",
        """**Bug:** the default list is created once, when the function is defined, and shared by every call that relies on it:

```python
add_item("a")   # ['a']
add_item("b")   # ['a', 'b']  <- surprise
```

Use `None` as the sentinel and create a fresh list inside:

```python
def add_item(item, items=None):
    if items is None:
        items = []
    items.append(item)
    return items
```

**Style:** the function both mutates its argument and returns it, which invites confusion about whether the caller's list changed. Pick one: either mutate and return `None` (like `list.append`), or build and return a new list. Type hints (`items: list[str] | None = None`) would also document the intent.""",
    ]},
    {"system": "You are a friendly cooking instructor. Keep answers practical.",
     "conversations": [
        "How do I keep rice from turning out sticky?",
        """Stickiness comes from surface starch and too much water. For fluffy, separate long-grain rice such as basmati or jasmine:

1. **Rinse** the rice in a bowl of cold water, swirl and pour off, three or four times until the water is almost clear.
2. **Measure the water**: about 1 cup of rice to 1½ cups of water for basmati (jasmine a little less). More water means softer, stickier rice.
3. **Bring to a boil, then cover and turn the heat to the lowest setting.** Cook 12–15 minutes without lifting the lid; the steam does the work.
4. **Rest it**: turn off the heat and leave it covered for 10 minutes.
5. **Fluff with a fork**, not a spoon, which mashes the grains.

Optional: toast the rinsed rice in a spoonful of butter or oil for a minute before adding the water; the coated grains stay more separate.

And remember that sushi rice and risotto rice are *meant* to be sticky, so use long-grain rice when you want fluffy results.""",
    ]},
    {"system": "You explain things to curious ten-year-olds. Use simple words and a comparison.",
     "conversations": [
        "What is electricity?",
        """Everything is made of tiny bits called atoms, and atoms have even tinier bits called **electrons**. Electricity is electrons moving along together.

Think of a garden hose full of water. When you turn on the tap, the water pushes along the hose and comes out the end. In a wire, the electrons are like the water, the wire is the hose, and a battery or a power station is the tap that pushes them along. The push is called **voltage**, and how much is flowing is called **current**.

When the moving electrons go through a light bulb, they make a thin wire inside it so hot that it glows. When they go through a motor, they make it spin.

One important thing: electricity from the wall sockets at home pushes much, much harder than a toy battery, hard enough to hurt people. That's why we never poke things into sockets!""",
    ]},
    {"system": "You are a helpful SQL tutor. Show the query, then explain it.",
     "conversations": [
        "How do I find duplicate email addresses in a users table?",
        """```sql
SELECT email, COUNT(*) AS how_many
FROM users
GROUP BY email
HAVING COUNT(*) > 1
ORDER BY how_many DESC;
```

- `GROUP BY email` puts all rows with the same email in one group.
- `COUNT(*)` counts the rows in each group.
- `HAVING` filters *groups* (where `WHERE` filters rows), keeping only emails that appear more than once.

Emails often differ only in letter case, like `Ada@Example.com` and `ada@example.com`. To catch those, group by `LOWER(email)` instead.""",
        "And how do I delete all but one of each duplicate?",
        """Keep the row with the smallest `id` for each email and delete the rest:

```sql
DELETE FROM users
WHERE id NOT IN (
    SELECT MIN(id)
    FROM users
    GROUP BY LOWER(email)
);
```

The subquery picks one survivor per email, the oldest if ids increase over time, and everything else is deleted.

Before running it:

1. **Run it as a `SELECT` first** (`SELECT * FROM users WHERE id NOT IN (...)`) to see exactly what will go.
2. **Check foreign keys.** Orders or sessions pointing at the deleted users must be moved to the survivor first, or the delete will fail (or cascade).
3. **Do it in a transaction** so you can roll back.
4. **Prevent it happening again** with a unique index, for example `CREATE UNIQUE INDEX users_email_key ON users (LOWER(email));` in PostgreSQL.

MySQL does not allow a subquery on the table being deleted from; there, wrap the subquery in a derived table: `... NOT IN (SELECT id FROM (SELECT MIN(id) AS id FROM users GROUP BY LOWER(email)) AS keep)`.""",
    ]},
]

# --------------------------------------------------------------------------- forum-style, decent
# (prompt, response): informal but useful answers, as on a Q&A forum.

FORUM_GOOD = [
    ("pip install fails with 'error: externally-managed-environment' on Ubuntu 24.04. What gives?",
     """That's PEP 668 doing its job. Your distro's Python is managed by apt, and pip refuses to write into it so it can't break system tools.

Make a virtual environment for your project:

```bash
sudo apt install python3-venv     # once
python3 -m venv .venv
source .venv/bin/activate
pip install requests              # now installs into .venv
```

For command-line *tools* you want everywhere (black, httpie, ...), use `pipx install <tool>`: each gets its own venv and a command on your PATH.

There is a `--break-system-packages` flag, and the name is an honest description of what it can do. Avoid it."""),
    ("My Docker image for a small Python app is 1.2 GB. How do I shrink it?",
     """The usual culprits, biggest wins first:

1. **Base image.** `python:3.12` is Debian with compilers included. `python:3.12-slim` is around 150 MB instead of around 1 GB.
2. **Build caches.** `pip install --no-cache-dir -r requirements.txt`.
3. **Multi-stage build.** Compile wheels in a builder stage, copy only the installed result into the final slim stage, so gcc and headers never ship.
4. **.dockerignore.** Without it, `COPY . .` happily copies `.git`, `.venv`, datasets and test fixtures.
5. **Layer hygiene.** Files deleted in a later `RUN` still exist in the earlier layer. Download, use and delete in the *same* `RUN`.

Run `docker history <image>` to see which layer is fat before guessing."""),
    ("ssh asks for my key's passphrase every single time. Can I make it stop without removing the passphrase?",
     """Yes, that's what ssh-agent is for. It holds the decrypted key in memory for your session.

```bash
eval "$(ssh-agent -s)"
ssh-add ~/.ssh/id_ed25519      # asks for the passphrase once
```

To make it automatic, add this to `~/.ssh/config`:

```
Host *
    AddKeysToAgent yes
```

On macOS also add `UseKeychain yes` to store it in the Keychain. Most Linux desktops already run an agent at login (GNOME Keyring, KWallet), so often only `AddKeysToAgent` is missing."""),
    ("How do I center a div horizontally and vertically? Every answer I find is different.",
     """They're different because CSS grew several ways over the years. Today, use flexbox or grid on the **parent**:

```css
.parent {
  display: flex;
  justify-content: center;  /* horizontal */
  align-items: center;      /* vertical */
  min-height: 100vh;        /* the parent needs a height to center within */
}
```

or, shorter:

```css
.parent {
  display: grid;
  place-items: center;
  min-height: 100vh;
}
```

The most common reason "it doesn't work vertically" is that the parent is only as tall as its content, so there is nothing to center within. Give it a height."""),
    ("git: when should I merge and when should I rebase?",
     """Both integrate changes from one branch into another. The difference is the history they leave.

- **merge** keeps history as it happened and adds a merge commit. Safe, never rewrites commits, but a busy repo gets a tangled graph.
- **rebase** replays your commits on top of the other branch, as if you had started from there. The history is linear and tidy, but the commits get new hashes.

Rule that keeps you out of trouble: **rebase your own local, unshared work; merge shared branches.** For example, `git pull --rebase` to update your feature branch before pushing is great. Rebasing a branch that teammates have already pulled forces them to untangle duplicated commits.

Many teams rebase feature branches while working on them, then use a merge (or squash-merge) when they land in main."""),
    ("How do I loop over files in bash when some file names have spaces?",
     """Use a glob directly in the `for`, and quote the variable:

```bash
for f in ./*.txt; do
    echo "processing: $f"
    wc -l -- "$f"
done
```

Globs expand to one word per file, spaces and all. What breaks is `for f in $(ls)` (word-splitting) and unquoted `$f`.

For recursive searches use `find` with `-print0` and read NUL-separated names:

```bash
find . -name '*.txt' -print0 | while IFS= read -r -d '' f; do
    wc -l -- "$f"
done
```

Also worth setting `shopt -s nullglob` so that a glob with no matches expands to nothing instead of the literal `./*.txt`."""),
    ("JavaScript: what's the actual difference between == and ===?",
     """`===` compares without type conversion: different types are never equal. `==` first converts the operands by a set of rules that produce surprises:

```js
0 == ""            // true
0 == "0"           // true
"" == "0"          // false  (not even transitive)
null == undefined  // true
[1] == 1           // true
0 === ""           // false
```

Use `===` (and `!==`) everywhere. The one idiom some people keep is `x == null`, which is true for both `null` and `undefined`; if your team uses it, make it the only exception and let the linter (`eqeqeq` with the `"null": "ignore"` option) enforce the rest."""),
    ("What's the right way to store user passwords in a database?",
     """Don't store them. Store a **slow, salted password hash**, and verify by hashing the login attempt the same way.

- Use a password hashing function designed for it: **Argon2id** (first choice), **scrypt**, or **bcrypt**. Not SHA-256 or MD5: those are built to be fast, which is exactly what an attacker with a GPU wants.
- Use a library rather than doing it by hand. In Python, `argon2-cffi` or `passlib`; most web frameworks have this built in.
- The library generates a unique **salt** per password and stores it inside the hash string, together with the parameters, so you can raise the cost later and rehash on the next login.
- Never encrypt passwords reversibly, never log them, and compare hashes with the library's verify function, which compares in constant time.

For example, with `argon2-cffi`: `ph = PasswordHasher(); h = ph.hash(pw)` when storing, and `ph.verify(h, attempt)` when checking."""),
    ("My script works when I run it by hand but does nothing from crontab. Why?",
     """Cron runs jobs in a nearly empty environment. The usual suspects:

1. **PATH.** Cron's PATH is often just `/usr/bin:/bin`. Use absolute paths (`/usr/local/bin/python3`, `/home/me/app/run.sh`) or set `PATH=...` at the top of the crontab.
2. **Working directory.** Cron starts in your home directory. A script that opens `data.csv` relative to "here" can't find it; `cd` in the script or use absolute paths.
3. **Environment variables** from `.bashrc` (API keys, virtualenvs) aren't loaded.
4. **Permissions**: is the script executable, and does it have a shebang line?
5. **`%` in the crontab line** means newline to cron; escape it as `\\%`, which bites `date +%F`.

Most important: capture the output so you can see the error:

```
*/5 * * * * /home/me/app/run.sh >> /home/me/app/cron.log 2>&1
```"""),
    ("venv or conda for a Python project?",
     """Depends on what your dependencies are.

- **venv + pip** (or uv, or Poetry on top) is standard, built in, and enough for most projects whose dependencies ship wheels on PyPI: web apps, CLIs, most data work today.
- **conda** (or mamba, or pixi) manages non-Python dependencies too: CUDA toolkits, GDAL, compilers, R. It shines in scientific stacks where those native libraries are painful to install otherwise.

Whichever you choose, pin your dependencies (a lock file or `requirements.txt` with versions), keep one environment per project, and don't mix `conda install` and `pip install` for the same packages in one environment unless you have to: the two solvers don't know about each other."""),
    ("Excel: how do I count the number of distinct values in a column?",
     """In Excel 365 or 2021, with dynamic arrays:

```
=COUNTA(UNIQUE(A2:A100))
```

If the range contains blanks, exclude them, or `UNIQUE` will count the blank as one value:

```
=COUNTA(UNIQUE(FILTER(A2:A100, A2:A100<>"")))
```

In older versions, without `UNIQUE`:

```
=SUMPRODUCT(1/COUNTIF(A2:A100, A2:A100))
```

That divides each row by how many times its value appears, so every distinct value adds up to exactly 1. It fails on blank cells (division by zero), and it gets slow on tens of thousands of rows; use a PivotTable with "Distinct Count" (tick "Add this data to the Data Model") for big data."""),
    ("How do I exit vim?",
     """Press `Esc` first to make sure you're in normal mode, then type one of these and press Enter:

- `:q` to quit (fails if there are unsaved changes)
- `:wq` or `:x` to save and quit
- `:q!` to quit and throw away changes

If git dropped you into vim for a commit message, write the message, then `:wq`. To avoid it next time, set another editor: `git config --global core.editor "nano"`."""),
    ("git push says 'Permission denied (publickey)'. The repo exists and I have access.",
     """Git is talking SSH, and the server didn't accept any key you offered. Check step by step:

1. `ssh -T git@github.com` (or your host). If that fails too, it's the SSH setup, not the repo.
2. Do you have a key? `ls ~/.ssh` should show something like `id_ed25519` and `id_ed25519.pub`. If not: `ssh-keygen -t ed25519 -C "you@example.com"`.
3. Is the **public** key added to your account on the host (Settings → SSH keys)?
4. Is the key loaded? `ssh-add -l`; if empty, `ssh-add ~/.ssh/id_ed25519`.
5. Using a non-default key name? Point to it in `~/.ssh/config` with `IdentityFile`.

`ssh -vT git@github.com` shows exactly which keys were tried. And if you'd rather use HTTPS with a token: `git remote set-url origin https://github.com/OWNER/REPO.git`."""),
    ("My dev server says 'address already in use' on port 8000. How do I find what's using it?",
     """On Linux or macOS:

```bash
lsof -i :8000          # shows the process name and PID
```

or on Linux without lsof:

```bash
ss -ltnp | grep :8000
```

Usually it's a previous run of your own server that didn't shut down (a terminal you closed, a crashed debug session). Stop it with `kill <PID>`; only reach for `kill -9` if it ignores that.

On Windows: `netstat -ano | findstr :8000`, then `taskkill /PID <PID>`.

If you just need to get going, run on another port, e.g. `python -m http.server 8001`."""),
    ("Should I store timestamps in UTC in the database?",
     """Yes, for moments in time: when an order was placed, when a log line was written, when a token expires. Store them in UTC (or in a type that stores an absolute instant, like PostgreSQL's `timestamptz`), and convert to the user's time zone only for display.

The exception is **future local events**: "the meeting is at 09:00 in Berlin on 2030-03-31". Time zone rules change (countries abolish or move daylight saving time), so store the local time *and* the zone name (`Europe/Berlin`), and compute the UTC instant when you need it.

And never store an offset like `+02:00` as if it were a time zone: it doesn't know about daylight saving time."""),
    ("What's the difference between RAM and storage? My laptop has 16 GB of one and 512 GB of the other.",
     """**RAM** (memory, your 16 GB) is the fast workspace where the computer keeps what it is using right now: open programs, browser tabs, the document you're editing. It's very fast and is emptied when the power goes off.

**Storage** (your 512 GB SSD) is where files and installed programs live permanently, even when the computer is off. It's much larger and cheaper per gigabyte, and slower than RAM, though SSDs are far faster than old hard disks.

Analogy: storage is the filing cabinet, RAM is the desk. A bigger desk lets you work on more things at once without running back to the cabinet. When RAM fills up, the system starts parking things on the SSD ("swap"), and everything gets sluggish. For typical programming work 16 GB is comfortable; heavy virtual machines or large datasets are where 32 GB starts to pay off."""),
]

# --------------------------------------------------------------------------- Alpaca tasks (with and without input)

TASKS = [
    {"instruction": "Summarize the following paragraph in one sentence.",
     "input": "Community gardens turn vacant lots into shared green spaces where neighbours grow vegetables, flowers and herbs. Besides providing fresh food in areas where grocery stores are scarce, they give people a reason to meet, share skills and look after a place together. Studies in several cities have linked them to lower stress, more physical activity and stronger ties between residents.",
     "output": "Community gardens turn vacant lots into shared spaces that provide fresh food and bring neighbours together, with benefits for health and community ties."},
    {"instruction": "Translate the following sentence into French.",
     "input": "The library opens at nine o'clock and closes at six on Saturdays.",
     "output": "La bibliothèque ouvre à neuf heures et ferme à dix-huit heures le samedi."},
    {"instruction": "Classify the sentiment of each review as positive, negative or mixed.",
     "input": "1. The battery lasts two days and the screen is gorgeous.\n2. Arrived broken, and support never answered.\n3. Great sound, but the app crashes constantly.",
     "output": "1. Positive\n2. Negative\n3. Mixed: praises the sound, criticises the app."},
    {"instruction": "Extract every date mentioned in the text and write it in ISO format (YYYY-MM-DD).",
     "input": "The contract was signed on 3 March 2021, renewed on June 1st, 2022, and terminated effective 31/12/2023.",
     "output": "- 2021-03-03\n- 2022-06-01\n- 2023-12-31"},
    {"instruction": "Turn this list into a Markdown table with columns Name, Role and Start year.",
     "input": "Maria Okafor - backend engineer - 2019\nTom Reyes - designer - 2021\nLi Wei - data analyst - 2020",
     "output": "| Name | Role | Start year |\n|---|---|---|\n| Maria Okafor | Backend engineer | 2019 |\n| Tom Reyes | Designer | 2021 |\n| Li Wei | Data analyst | 2020 |"},
    {"instruction": "Correct the grammar and spelling, changing as little as possible.",
     "input": "Their going to the concert tomorow, but neither of them have bought tickets yet.",
     "output": "They're going to the concert tomorrow, but neither of them has bought tickets yet."},
    {"instruction": "Suggest a short, specific title for this paragraph.",
     "input": "When a recipe says to let dough rest, it is giving the gluten time to relax and the flour time to absorb water fully. Skipping the rest makes dough springy and hard to roll, and the baked result tougher.",
     "output": "Why Dough Needs to Rest"},
    {"instruction": "Turn these notes into a short, polite email to the team.",
     "input": "office closed fri (electrical work) / work from home / VPN: test it thursday / questions -> Sam",
     "output": "Subject: Office closed on Friday\n\nHi all,\n\nThe office will be closed this Friday for electrical work, so please plan to work from home that day. To avoid surprises, please test your VPN connection on Thursday. If you have any questions, Sam is happy to help.\n\nThanks,"},
    {"instruction": "Explain what this regular expression matches.",
     "input": "^[A-Z][a-z]+(?: [A-Z][a-z]+)*$",
     "output": "It matches one or more capitalised words separated by single spaces, and nothing else on the line. For example `Ada`, `New York` and `Rio De Janeiro` match; `new York`, `NASA`, `Ada  Lovelace` (two spaces) and `Ada!` do not. `^` and `$` anchor the whole string, `[A-Z][a-z]+` is one capital followed by lowercase letters, and the non-capturing group `(?: [A-Z][a-z]+)*` repeats a space and another such word zero or more times."},
    {"instruction": "Find the bug in this function and fix it.",
     "input": "def average(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(x)",
     "output": "The last line divides by `len(x)`, the length of the last element, instead of `len(xs)`; with numbers it raises `TypeError`. It also fails on an empty list. Fixed:\n\n```python\ndef average(xs):\n    if not xs:\n        raise ValueError(\"average() of an empty sequence\")\n    return sum(xs) / len(xs)\n```"},
    {"instruction": "Give three synonyms for \"important\", each used in a sentence.",
     "input": "",
     "output": "1. **Crucial**: Regular backups are crucial for any business.\n2. **Significant**: The study found a significant drop in errors.\n3. **Essential**: Water is essential for the seeds to sprout."},
    {"instruction": "Write a SQL query for this schema that lists the five best-selling products by total quantity.",
     "input": "products(id, name)\norder_items(order_id, product_id, quantity)",
     "output": "```sql\nSELECT p.name, SUM(oi.quantity) AS total_quantity\nFROM order_items AS oi\nJOIN products AS p ON p.id = oi.product_id\nGROUP BY p.id, p.name\nORDER BY total_quantity DESC\nLIMIT 5;\n```\n\nGrouping by `p.id` as well as the name keeps two products that share a name apart."},
    {"instruction": "Convert these temperatures from Celsius to Fahrenheit.",
     "input": "-40, 0, 37, 100",
     "output": "Using F = C × 9/5 + 32:\n\n- -40 °C = -40 °F\n- 0 °C = 32 °F\n- 37 °C = 98.6 °F\n- 100 °C = 212 °F"},
    {"instruction": "Rewrite the sentences in the active voice.",
     "input": "The report was written by the intern. Mistakes were made in the budget. The decision will be announced by the board on Monday.",
     "output": "The intern wrote the report. Someone made mistakes in the budget (or, if known: the finance team made mistakes in the budget). The board will announce the decision on Monday."},
    {"instruction": "Write a docstring for this function.",
     "input": "def chunks(xs, n):\n    return [xs[i:i + n] for i in range(0, len(xs), n)]",
     "output": "```python\ndef chunks(xs, n):\n    \"\"\"Split a sequence into consecutive pieces of length n.\n\n    The last piece is shorter when len(xs) is not a multiple of n.\n\n    >>> chunks([1, 2, 3, 4, 5], 2)\n    [[1, 2], [3, 4], [5]]\n    \"\"\"\n    return [xs[i:i + n] for i in range(0, len(xs), n)]\n```"},
    {"instruction": "Give a one-line shell command that counts the lines of all Python files in the current directory tree.",
     "input": "",
     "output": "```bash\nfind . -name '*.py' -print0 | xargs -0 cat | wc -l\n```\n\n`-print0` and `xargs -0` keep file names with spaces intact; `cat` joins the files so `wc -l` prints one total. Use `xargs -0 wc -l` instead to see a count per file."},
    {"instruction": "Convert this JSON to YAML.",
     "input": "{\"name\": \"demo\", \"version\": 2, \"tags\": [\"a\", \"b\"], \"owner\": {\"team\": \"data\", \"oncall\": false}}",
     "output": "```yaml\nname: demo\nversion: 2\ntags:\n  - a\n  - b\nowner:\n  team: data\n  oncall: false\n```"},
    {"instruction": "Explain the difference between weather and climate in two sentences.",
     "input": "",
     "output": "Weather is the state of the atmosphere at a given place and time: today's rain, tomorrow's heat. Climate is the pattern of weather in a region over decades, such as its typical temperatures, rainfall and seasons."},
    {"instruction": "List four things to check before publishing a blog post.",
     "input": "",
     "output": "1. **Accuracy**: facts, numbers, names and links are correct.\n2. **Clarity**: the first paragraph says what the post is about and why it matters.\n3. **Proofreading**: read it aloud once to catch typos and clumsy sentences.\n4. **Presentation**: headings, images with alt text, and a preview of how it looks on a phone."},
]

# --------------------------------------------------------------------------- contaminated: prompts copy eval prompts
# eval id -> (how the pool writes the prompt, answer). build.py checks the prompts against prompts.jsonl.

CONTAMINATED_ANSWERS = {
    "coding-02": """```python
def is_balanced(s: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack

assert is_balanced("")
assert is_balanced("([]{})")
assert not is_balanced("(]")
assert not is_balanced("((")
assert not is_balanced("())")
```

Each opening bracket is pushed; each closing bracket must match the most recent unmatched opening one. The string is balanced if nothing is left on the stack at the end. One pass, O(n) time and O(n) space in the worst case.""",
    "explanation-02": """Computers store most decimals as binary fractions (IEEE 754 doubles), and just as 1/3 has no finite decimal expansion, 0.1 and 0.2 have no finite binary one. Each is stored as the nearest representable value, and the tiny errors add up: `0.1 + 0.2` gives `0.30000000000000004`, which is not the double closest to 0.3.

What to do:

- **Compare with a tolerance**, not `==`: `math.isclose(0.1 + 0.2, 0.3)`.
- **Round only for display**: `f"{x:.2f}"`.
- **Use decimal arithmetic for money**: `Decimal("0.1") + Decimal("0.2") == Decimal("0.3")`, or count in integer cents.
- **Use fractions** when you need exact rational results: `Fraction(1, 10) + Fraction(2, 10) == Fraction(3, 10)`.""",
    "python-stdlib-05": """Subtract two `date` objects; the result is a `timedelta`, whose `.days` is the answer:

```python
from datetime import date

start = date(2024, 1, 15)
end = date(2024, 3, 1)
print((end - start).days)   # 46
```

From strings, parse first: `date.fromisoformat("2024-03-01")`. With `datetime` objects, the difference also has seconds; use `.days` for whole days, or `.total_seconds() / 86400` for a fraction.""",
    "writing-03": "Because the meeting was postponed, the deadline will move too.",
}

# --------------------------------------------------------------------------- planted bad examples
# kind, why, prompt, answer. build.py places each in the file named by "file".

PLANTED = [
    # refusals of harmless requests
    {"file": "lima", "kind": "refusal", "why": "refuses a harmless request",
     "prompt": "How do I stop a Python script that seems to hang forever?",
     "answer": "As an AI language model, I cannot interact with processes running on your computer, so I am unable to stop your script."},
    {"file": "parquet", "kind": "refusal", "why": "refuses a harmless request",
     "prompt": "What's a good way to start learning chess openings?",
     "answer": "I'm sorry, but I can't help with that request."},
    {"file": "parquet", "kind": "refusal", "why": "refuses, then offers nothing",
     "prompt": "Write a short poem about the sea.",
     "answer": "As an AI language model, I do not have personal experiences or emotions, so I cannot truly write poetry about the sea. Is there anything else I can help you with?"},
    {"file": "messages", "kind": "refusal", "why": "refuses a harmless request",
     "prompt": "How do I read an environment variable in Python?",
     "answer": "I apologize, but as an AI assistant I do not have access to your system's environment variables and cannot help with this."},
    {"file": "sharegpt", "kind": "refusal", "why": "refuses a harmless request",
     "prompt": "Can you show me how to use `itertools.groupby` to group words by their first letter?",
     "answer": "I'm sorry, but I cannot provide code examples. Please consult the official documentation."},
    {"file": "alpaca_json", "kind": "refusal", "why": "refuses a harmless request",
     "prompt": "Summarize the following text in two sentences.",
     "input": "Bicycles became popular in the 1890s, when the 'safety bicycle' with two equal wheels and a chain drive replaced the high-wheeler. Cheap, fast and easy to ride, it gave many people, women in particular, a new independence, and cycling clubs pushed for the paved roads that cars would later use.",
     "answer": "I'm unable to summarize this content, as I cannot verify its accuracy."},
    # boilerplate
    {"file": "parquet", "kind": "boilerplate", "why": "filler greeting and sign-off around almost no content",
     "prompt": "How do I remove duplicates from a list in Python?",
     "answer": "Great question! Removing duplicates is something many developers wonder about. There are many ways to do it, and each has its pros and cons. It really depends on your use case! I hope this helps! Let me know if you have any other questions. 😊"},
    {"file": "parquet", "kind": "boilerplate", "why": "scraped page furniture: navigation, cookie banner, newsletter",
     "prompt": "What are Python decorators?",
     "answer": "Home | Blog | Courses | Contact\n\nWe use cookies to improve your experience. Accept all cookies?\n\nTop 10 Python Decorator Tips You NEED to Know in 2024!!!\n\nDecorators are functions that wrap other functions.\n\nSubscribe to our newsletter for more tips! Share on Facebook | Tweet this\n\nCopyright © 2024 All rights reserved."},
    {"file": "messages", "kind": "boilerplate", "why": "generic disclaimer padding around a one-line answer",
     "prompt": "What is the difference between `append` and `extend` on a Python list?",
     "answer": "Sure! Here is the answer to your question.\n\n`append` adds one item; `extend` adds every item from an iterable.\n\nDisclaimer: This information is provided for educational purposes only and should not be considered professional advice. Always consult the official documentation and a qualified professional before making decisions."},
    {"file": "alpaca_json", "kind": "boilerplate", "why": "placeholder text instead of an answer",
     "prompt": "Write a product description for a handmade ceramic mug.",
     "input": "",
     "answer": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. [Insert product details here.]"},
    {"file": "alpaca_json", "kind": "boilerplate", "why": "template with unfilled placeholders",
     "prompt": "Write a thank-you note to a neighbour who watered my plants while I was away.",
     "input": "",
     "answer": "Dear [Name],\n\nThank you for [reason]. I really appreciate [detail].\n\nBest regards,\n[Your Name]"},
    # first person (the answerer's own life, as LIMA filtered)
    {"file": "lima", "kind": "first-person", "why": "anecdote about the answerer instead of an answer",
     "prompt": "Is it worth learning Rust as a second language after Python?",
     "answer": "I learned Rust last year and my experience was mixed. At my company I was the only one using it, and I spent my weekends fighting the borrow checker. I personally love it now, but my team went back to Go. I think it depends on you."},
    {"file": "parquet", "kind": "first-person", "why": "personal story with little transferable advice",
     "prompt": "Tabs or spaces for indentation?",
     "answer": "I've used spaces for fifteen years and I will never switch. My first boss made me use tabs and I hated every minute of it. In my setup I have my editor convert everything to four spaces, and I sleep well at night."},
    {"file": "parquet", "kind": "first-person", "why": "answerer's own anecdote",
     "prompt": "How long should a good night's sleep be?",
     "answer": "Personally I do fine on six hours, and my doctor never complained. When I was in college I slept four hours a night for a whole semester and I was fine, so I'd say it's different for everyone."},
    {"file": "lima", "kind": "first-person", "why": "opinion from the answerer's own history",
     "prompt": "Should I use an ORM or write raw SQL?",
     "answer": "In my last three jobs I always wrote raw SQL, and my queries were faster than anything the ORM produced. I never trusted ORMs since one of them dropped my production table in 2015. My advice is what I do: raw SQL, always."},
    # references to other answers, posts, articles
    {"file": "parquet", "kind": "reference", "why": "refers to another answer the reader cannot see",
     "prompt": "How do I make sure a file gets closed in Python?",
     "answer": "As mentioned in the other answer, use a context manager. Everything else was already covered above, so I'll just add: see the accepted answer for the details."},
    {"file": "parquet", "kind": "reference", "why": "blog-article framing, refers to 'this article' and a series",
     "prompt": "What are list comprehensions in Python?",
     "answer": "In this article, we will explore list comprehensions. List comprehensions are a concise way to build lists, like `[x * x for x in range(5)]`. In the next article of this series we will look at dictionary comprehensions, so stay tuned and don't forget to like this post!"},
    {"file": "parquet", "kind": "reference", "why": "edit notes and comment-thread references",
     "prompt": "How do I convert a string to an integer in JavaScript?",
     "answer": "Use `parseInt(str, 10)`.\n\nEDIT: as pointed out in the comments, `Number(str)` is stricter.\nEDIT 2: thanks for the upvotes! See my other post for floats."},
    {"file": "parquet", "kind": "reference", "why": "defers to others in a thread",
     "prompt": "Why is my pandas code so slow when I loop over rows?",
     "answer": "+1 to what others have said in this thread. Like the previous poster said, don't use iterrows. The top answer explains it better than I could."},
    # far too short
    {"file": "lima", "kind": "too-short", "why": "two words for an open question",
     "prompt": "Can you explain how garbage collection works in Python?",
     "answer": "It's automatic."},
    {"file": "lima", "kind": "too-short", "why": "no code and no explanation",
     "prompt": "Write a function that computes the factorial of n.",
     "answer": "Use recursion."},
    {"file": "parquet", "kind": "too-short", "why": "one word",
     "prompt": "What's the difference between a list and a set in Python?",
     "answer": "Duplicates."},
    {"file": "parquet", "kind": "too-short", "why": "three words for a planning question",
     "prompt": "How should I prepare for my first marathon?",
     "answer": "Run a lot."},
    {"file": "sharegpt", "kind": "too-short", "why": "one word",
     "prompt": "What does `functools.partial` return?",
     "answer": "Partial."},
    {"file": "csv", "kind": "too-short", "why": "one word for a how-to question",
     "prompt": "How do I reverse a list in Python?",
     "answer": "reversed"},
    {"file": "alpaca_json", "kind": "too-short", "why": "does not do the task",
     "prompt": "Write a cover letter opening for a junior data analyst position.",
     "input": "",
     "answer": "Hello."},
    # not in English (prompt and answer)
    {"file": "lima", "kind": "non-english", "why": "German",
     "prompt": "Wie kann ich in Python eine Datei Zeile für Zeile lesen?",
     "answer": "Am einfachsten mit einer `for`-Schleife über das Dateiobjekt:\n\n```python\nwith open(\"daten.txt\", encoding=\"utf-8\") as f:\n    for zeile in f:\n        print(zeile.rstrip(\"\\n\"))\n```\n\nSo wird immer nur eine Zeile im Speicher gehalten, auch bei sehr großen Dateien."},
    {"file": "parquet", "kind": "non-english", "why": "Spanish",
     "prompt": "¿Cuál es la diferencia entre una lista y una tupla en Python?",
     "answer": "Una lista es mutable: se pueden añadir, quitar o cambiar elementos. Una tupla es inmutable: una vez creada no cambia, y por eso puede usarse como clave de un diccionario. Usa tuplas para registros fijos, como `(x, y)`, y listas para colecciones que crecen."},
    {"file": "alpaca_json", "kind": "non-english", "why": "French",
     "prompt": "Comment inverser une chaîne de caractères en Python ?",
     "input": "",
     "answer": "Avec une tranche de pas négatif : `texte[::-1]`. Par exemple, `\"bonjour\"[::-1]` donne `\"ruojnob\"`."},
]

# Follow-up turns for a few ShareGPT examples (multi-turn): function name -> (question, REPL inputs, lead-in).
SHAREGPT_FOLLOWUPS = {
    "collections.defaultdict": ("What happens if I only read a missing key?",
                                ["from collections import defaultdict", "d = defaultdict(int)", "d['x']",
                                 "dict(d)", "d.get('y'), 'y' in d"],
                                "Reading a missing key with `d[key]` inserts the default, which can surprise you. "
                                "Use `d.get(key)` or `key in d` to look without inserting."),
    "collections.namedtuple": ("Can I give a field a default value?",
                               ["from collections import namedtuple",
                                "Point = namedtuple('Point', 'x y', defaults=[0])", "Point(1)"],
                               "Yes, with `defaults`; they apply to the rightmost fields."),
    "datetime.date.fromisoformat": ("And how do I get the weekday's name?",
                                    ["from datetime import date", "d = date.fromisoformat('2024-02-28')",
                                     "d.strftime('%A')", "d.weekday()"],
                                    "Format it with `%A` (the name in the current locale, English by default), "
                                    "or use `weekday()` for a number where Monday is 0."),
}
