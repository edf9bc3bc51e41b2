"""Short "how it works" texts shown in each tab (for teaching)."""

INTRO = """# RegionLab
Point at part of an image and ask a CLIP model about *that part*. Pick an example or upload an
image, make regions (click, two-click box, brush, or automatic proposals), then explore them in
the tabs below. Every button here is also a named API endpoint (see "Use via API" at the bottom).
"""

REGIONS = """**Making regions.** *Include* / *Exclude* clicks refine the active region (SAM when its
weights are available, otherwise a classical colour-growing segmenter through the same
interface). *Box* mode takes two clicks (opposite corners). *New region* starts another one.
*Undo click* takes back the latest click (repeat it for earlier ones). An *Exclude* click
only ever removes pixels from the region.
*Brush*: paint on layers in the editor, one region per layer. *Proposals*: class-agnostic masks
found automatically. Regions are redrawn on the original image; select, rename or delete them.
"""

EMBEDDING = """**How it works: MaskInversion.** CLIP summarises a whole image in one
embedding. To get an embedding for *one region*, MaskInversion starts from the global
embedding and optimises it (AdamW, only the embedding changes, the model is frozen) so that
its LeGrad explainability map,
the map of where CLIP "looks" for that embedding, matches the region's mask (soft Dice loss).
The heatmap *before* is where the global embedding looks; *after* should cover the region; the
slider replays the optimisation. The learned embedding then replaces the image embedding: its
cosine with class-name text embeddings ranks the classes. The table compares it with simpler
region embeddings: the global image, a crop of the box, a masked crop (outside filled with the
mean colour), a blurred background (ReCLIP) and a red circle drawn around the region.
"""

GROUNDING = """**How it works: ReCLIP.** Each candidate box is scored by CLIP in isolation: a
crop of the box and the whole image blurred except the box, both compared with "a photo of
&lt;expression&gt;". CLIP is poor at spatial words, so a dependency parse of the expression finds
the head noun, related objects and relations ("left of", "above", "bigger") and superlatives
("leftmost", "largest"); these are applied as simple geometric rules over the boxes and
combined with the CLIP scores. The parse tree shows which rule fired.

*Combination*: **tree** (default) lets the parse tree decide once a spatial word occurs, so
CLIP's confident but spatially blind score of the whole sentence cannot overrule it;
**reference** is ReCLIP's `IPS(sentence) x tree` at `100 * cos`; **calibrated** is that product
at the model's own logit scale. *Temperature* flattens CLIP's scores before the tree's rules
apply; *margin*: proposals within that many logits of a noun phrase's best match count as
equally good members; *contrast weight*: a proposal that CLIP reads as a phrase one known
word away ("the square" when you asked for "the circle") is pushed down by that many times its
preference (models that declare their words, such as the bundled CLIP; choosing a combination
shows its defaults). When the chosen proposal itself reads better as such a variant, or no
proposal fits a phrase, the summary says so above the answer.
"""

LABELLING = """**How it works: OVSeg-style labelling.** Class-agnostic masks (your regions, or
automatic proposals) are each cropped to their box with the outside filled by the mean colour
(a *masked crop*) and classified by CLIP against your class list (14 prompt templates per
class). Masks are then painted with their best class; a pixel nobody claims stays unlabelled.
"""

CAPTION = """**Localized captions and generation.** The region embedding from MaskInversion
replaces the image embedding fed to a caption decoder (CLIPCap-style prefix) or to a
CLIP-embedding-conditioned image generator (unCLIP-style), so the text or images describe the
region rather than the whole picture.
"""

GENERATE = """The bundled ShapesWorld generator draws *what* the region is -- its class, centred and
upright -- not where it lies or how it is turned; under each image, the class the CLIP sees.
"""

SETTINGS = """**Settings.** Models per kind (only available ones can run; the reason is shown for
the others), MaskInversion's engine (`autograd` differentiates through the last block,
`factorized` uses the exact backward-free decomposition, `auto` picks the cheaper), the number
of iterations, the learning rate, alpha (pull towards the global embedding) and the input
resolution. Timings of your latest runs appear below. Settings are per session.
"""

EXPORT = """**Export.** One zip with `results.json` (regions, settings, every tab's latest results),
each region's mask and overlay as PNG, and the region embeddings as `embeddings.npy`.
"""
