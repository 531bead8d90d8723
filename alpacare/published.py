"""Published files a reproduction needs (the paper's data, prompts and released outputs), each
at a commit-pinned address with its checksum. A job downloads one when it needs it and refuses
it unless the bytes match; nothing published is copied into the project.

A config names a published file as `<source>:<path>`, e.g. `alpacare:data/MedInstruct-52k.json`,
wherever it takes a URL. Each file is checked against its SHA-256 where the pin was taken from
the bytes, and against its git blob id where only the repository's tree was read (files of
4 MiB or more): SHA-1 over `blob <size>\\0` + the bytes, the id git itself gives the content,
so either check refuses any other file.

`ALPACARE_MIRROR` (a base URL, e.g. `http://127.0.0.1:8080` or `file:///data/mirror`) fetches
every download from `<mirror>/<host>/<path>` instead, for sites without internet access and
for tests; the checksums still decide.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .io import atomic_path


@dataclass(frozen=True)
class Source:
    repo: str
    commit: str
    about: str

    def url(self, path: str) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{path}"


SOURCES = {
    "alpacare": Source("XZhang97666/AlpaCare", "b469c41bcd7ddd57dd0bc072ef99d017c5cb0e4b",
                       "AlpaCare's repository (data: CC BY-NC 4.0)"),
    "alpaca_eval": Source("tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20",
                          "alpaca_eval's repository (Apache-2.0; model outputs as their authors' terms)"),
    "stanford_alpaca": Source("tatsu-lab/stanford_alpaca", "761dc5bfbdeeffa89b8bff5d038781a4055f796a",
                              "Stanford Alpaca's repository (data: CC BY-NC 4.0)"),
}

# path -> (git blob id, SHA-256 or None where the bytes were not read: files of 4 MiB or more)
FILES = {
    "alpacare": {
        "data/MedInstruct-52k.json": ("9ea73eb818d01af2e98f237b52f0f7974d632829", None),
        "data/MedInstruct-test.jsonl": ("1826177ae22673ee43bf543d6e2743b4cb9a594b", "cbcdbb18be6a1daf9899be9859170c75825c87e68e4b51d1bd5097a884a0f2c9"),
        "data/med_seed.json": ("881aa63e43bb4d94f6fda41b7f92dd8dee1af9d7", "01626406491f59826f4a7111a25e9d7cf57d5dfdff0b50221e8c4cf6f4e8e7a2"),
        "prompt/alpaca_eval_anthropic.txt": ("a36681b0884435fd2aed67d7f6fde9dfa5d372c8", "b11eabf5b87c856c379e849db035fc3caf67cb8229b265dc2553e5e71cd38495"),
        "prompt/alpaca_eval_chat_gpt.txt": ("c8b2cb8eadc18526d61f41f4f79308d92c7c8fce", "c668196c3357383c3a8f5c8b5b61c5a4c254df400e5e04087d8913c83e629b8e"),
        "prompt/instrcution_prompt.txt": ("dd43aa19c96005309c361bcaa5aefafd4ae7f35e", "dec6efc58a66de03094355e4e185bf2cb091ca22d058efb07c51c14b696df50a"),
        # the scripts that fill the prompts, read for their system prompts (alpacare-official)
        "evaluation/gpt_eval.py": ("0b1e0edaa19dac3b721d0a864a45de656ad9f04b", "18a342baf5e99aa80ce75560ce82e33d33ce49489e9db558735d3dcca3a68910"),
        "task_output_generation/task_generation.py": ("2dbc0df696e42aed4c21cd9d0b7f3c98140cc810", "d4994d5c859d722b296f75519a9eb1a868d7b6955fff1318b79782ff1b7c6300"),
        "data/reference_outputs/claude-2/iCliniq_output.jsonl": ("e539c1fef88606f4f9f80d26ab74c33985243fcf", "6d2894827b6c8c41f97f7b2b11c90b00718b68830c298e6340861e1c51c91609"),
        "data/reference_outputs/claude-2/medsi_output.jsonl": ("2eb7681170550d125d03dd0e425b4ae3319830f2", "5588699ebe7af791753217d829285b9911f09a29a3164ec9b91379d7c739bdab"),
        "data/reference_outputs/gpt-3.5-turbo/iCliniq_output.jsonl": ("118a4c50dfc779d4bcf76ad9f11d5f44cff306b4", "5a430f6361e92140b53c65777b40421c3882d76e1e4f57d83cdb2e558a4de1ab"),
        "data/reference_outputs/gpt-3.5-turbo/medsi_output.jsonl": ("b170b3e20abec23c3502ae835a119a66b5c9a46a", "5d91f8aa6981a55ed091dc50f9b1366d4c8b3e2926701738b7f7cdc42748762f"),
        "data/reference_outputs/gpt-4/iCliniq_output.jsonl": ("141fc9347af11474530a579797c5ebcff11b6d46", "ac9fa72184ccca3b3e427b9d24b18b641207aec6f8e09e7369d7453520c52a86"),
        "data/reference_outputs/gpt-4/medsi_output.jsonl": ("2f5d8033e6b254daee23b80bb417d262db900499", "3a76d8c1ed3552b275eafe9d4037482961a712fe81c6e8f47d0d695c632635e5"),
        "data/reference_outputs/text-davinci-003/iCliniq_output.jsonl": ("e9f3e38535befe62a63f2e219aea88932c2b611b", "2a938e0a2d77f72e36fcc6ad954cf13aae0d6f7d5cfdd087ffd747a005310546"),
        "data/reference_outputs/text-davinci-003/medsi_output.jsonl": ("5d0aebc342882cd74bb2ad3c5b5de07546758be0", "66154b663cd53734f03defdb8f264c41b0b0acd8465a434155ab8cd82210b4b9"),
        # released model outputs: data/model_ouputs/<model>/<test set>/seed_0.json (the repository's spelling)
        "data/model_ouputs/AlpaCare-13b-llama-2/alpaca_eval/seed_0.json": ("b1d4bc36e9d7cab82055d4d2c736cd0b0df2b10c", "ee9f0177565caa8fd457d0b6d45af7bea3938452de82410683d3298b6e8d8eb5"),
        "data/model_ouputs/AlpaCare-13b-llama-2/iCliniq/seed_0.json": ("7c4ab69f7af1b4563bfaa9dae2d4af561c73aa14", "ce1b91734c96c13ca0df6670107a37bb8129e6e54fe895d68a4500fc0b59a25b"),
        "data/model_ouputs/AlpaCare-13b-llama-2/medsi/seed_0.json": ("900099fdd55aaa66736b72cf2d2891f91410bdfb", "6fcbdb6cf52a7b6068c7fdf87de4546344ccc163d658cb427ce9d10fb1425099"),
        "data/model_ouputs/AlpaCare-13b/alpaca_eval/seed_0.json": ("66cfd336535d69f1d6a4889498f0917b0d16c349", "331e6ee6c1c7a8d9667b0554705409b2f68fbfd64f1ab390ba32caee0df435fd"),
        "data/model_ouputs/AlpaCare-13b/iCliniq/seed_0.json": ("b651c33cd6dac3ac0480273eb28a031b8a59d9e4", "c2f3daa1e0f3bc2d068f57d77ef422644250f10408f74c0bda55bcd35d5458e3"),
        "data/model_ouputs/AlpaCare-13b/medsi/seed_0.json": ("2b5715d2bc044bbe1a8396b6d55b0c570fb006c8", "4bd97324d9ae8a1ca5c8f433e4fa82d679e321827d44862a4f735301e80b8fd3"),
        "data/model_ouputs/AlpaCare-7b-llama-2/alpaca_eval/seed_0.json": ("deec5d5501a7674b2567401b08d04d346323c0bf", "cbcd68e5ab2eb08de4cddd12bf39f4fe01fc1a8e0ecfe13455cc17b7149e8ebc"),
        "data/model_ouputs/AlpaCare-7b-llama-2/iCliniq/seed_0.json": ("02541eb0cc4e19c66b4ae7c334e2f3e31e84f581", "4666b01429ddef357453c8e9a13ab677b33d94e1f800ce7df7ff7af800c6f815"),
        "data/model_ouputs/AlpaCare-7b-llama-2/medinstruct/seed_0.json": ("24c7758faf5880cf69d27d8b2d2d1ed57da822f8", "b791126f33e88ae621f4f9ff03da50e617af78ef246b46c2d7eb42d44454200a"),
        "data/model_ouputs/AlpaCare-7b/alpaca_eval/seed_0.json": ("121432fb51d721816159e15eff603df67e727f80", "b0ef7e53dc7445aeedac7f7c448d52b8f686d4c5d04f6229fe02c44a6f662a9a"),
        "data/model_ouputs/AlpaCare-7b/iCliniq/seed_0.json": ("76035f6baea9408c4715834508606c63eecc1cb1", "401dd95953e9f6011931691720896776cd95b78d3636a71e89c07e4175c2a41d"),
        "data/model_ouputs/AlpaCare-7b/medinstruct/seed_0.json": ("4cbb84ee94c7d05a148e12669599875ee3a6f4b3", "3cd82a189e8f0105233389ea663f84cd50dce68c9c0f1db1ae756335b0902513"),
        "data/model_ouputs/ChatDoctor_weights/alpaca_eval/seed_0.json": ("95fa0790c612697961b2e8b01eebf62a6d0d63fd", "3b6f2f7cb34bfb886c8728c29e5fc3f1b479c3b2dec4d53fc4371c8a01d92576"),
        "data/model_ouputs/ChatDoctor_weights/iCliniq/seed_0.json": ("f32007b6bc5934b385d364908b193849e9ea9e16", None),
        "data/model_ouputs/ChatDoctor_weights/medinstruct/seed_0.json": ("ceb70f7291af5b0aa293aae8d52b5d49152241ff", "acd284be0e8b60c12c19d1dd1cd9fe74d8e0baa82964ce03841b7d4755abeb74"),
        "data/model_ouputs/PMC_LLAMA_7B/alpaca_eval/seed_0.json": ("0cae20553f4d902bf8a397089ec52477767ff357", "3321958b0feecdcf879e4720839532adfc3625355469185581fa7a3743ffe9c2"),
        "data/model_ouputs/PMC_LLAMA_7B/iCliniq/seed_0.json": ("09e789a57ddf76d56b6b81bb7dc0663ceb53ab17", "5d7119d4c5751db92838ed7d141ed392ad3ddd3dc359a3538e50a68612aa6cb2"),
        "data/model_ouputs/PMC_LLAMA_7B/medinstruct/seed_0.json": ("7a5d0f5faca2ecd71af5396016a4731c7e1e5a7b", "7d128732e81545d917126d6036594b09355ac581c08e21f410de10780a03c9fc"),
        "data/model_ouputs/PMC_LLaMA_13B/alpaca_eval/seed_0.json": ("94d7f512682aab4d4308e4c5aefa0507b54ec1c2", "2c250ba7e88c1d4850d0a09e14923848c3577b1d551ee5af372f798a2a4984bc"),
        "data/model_ouputs/PMC_LLaMA_13B/iCliniq/seed_0.json": ("a0ef8de603140e4c0478d9f02516dbd934efb858", "1a321c58b320e5414a76727dbf1a989cc5bbf1a23e8f3c44ff5bfb8bc2997d3b"),
        "data/model_ouputs/PMC_LLaMA_13B/medinstruct/seed_0.json": ("6faee943d09d8b6de5e4712350c150fbc396f136", "e3acde63fe484ae425c5e47210171cdcc6c3ea25535b67f6b94d5be37f57b318"),
        "data/model_ouputs/alpaca-13b-llama-2/alpaca_eval/seed_0.json": ("c4dd35d1ac93e49a86b9f1d8843b4f01fedb0bff", "39825473bdd74aaf8f7940f33dde154be0081427288c42fe9815f763d03c93d0"),
        "data/model_ouputs/alpaca-13b-llama-2/iCliniq/seed_0.json": ("7016b7bd645e0dfc2e444f4a794daa4f3b9ed44e", "86ab22bfcd3870f02fb0f30fcaed271a4f674c4d5fa078a86490ac93544c52a9"),
        "data/model_ouputs/alpaca-13b-llama-2/medsi/seed_0.json": ("41984c542190e5691134f76db8acc4a3f01b396f", "76238723db918d157455e58a96075802b933ad57bebb4d091c0d270f8571d458"),
        "data/model_ouputs/alpaca-13b/alpaca_eval/seed_0.json": ("e32bb8c20caf5d783ca030e7c5807b3e5fdbb8a8", "ae644d5721d28f55cd97397db62102a5b9fe29c47d0ce920120d4ad7ed38a5f1"),
        "data/model_ouputs/alpaca-13b/iCliniq/seed_0.json": ("94c19a4dc0bc087671533cdf3d00a902c15b0e1b", "e183832e3b7cf7bd0b6eb59095932c8609b4ffb891cf635beb07ed53a2dc0c65"),
        "data/model_ouputs/alpaca-13b/medsi/seed_0.json": ("35581c6068b30cd54ff3b5090c5af0ec2f5e4fa9", "c24daa564be4a8c7f2709232b5072b39024f272dad1f1f39292175fb6b870c8c"),
        "data/model_ouputs/alpaca-7b-llama-2/alpaca_eval/seed_0.json": ("77b646c2928151ce93c3f4919ab534b25099b95d", "a678eda2c2c6a5351eec77f3f9d55da0b9a70423bc520ac4495286a59dc16170"),
        "data/model_ouputs/alpaca-7b-llama-2/iCliniq/seed_0.json": ("5f071f662c002aa46b8b3519275d077ebb9e95eb", None),
        "data/model_ouputs/alpaca-7b-llama-2/medinstruct/seed_0.json": ("6eca0afad96ba4b0ca2327a6e02375f3919f2d06", "1d641969cdc4806849760d0536f98a7ee75156a0ce0b6ac1ddcb17032ed10108"),
        "data/model_ouputs/alpaca/alpaca_eval/seed_0.json": ("8680d6c485e87683b1d72dd5cbeff8e51dc34ab8", "a6c7dff313b0df123844ec6eea60f66059ad9d2d4ca11d294a8e7a9a59e51275"),
        "data/model_ouputs/alpaca/iCliniq/seed_0.json": ("b284ab1ffd267fcb15fc9e4406c48efac7c73ae3", None),
        "data/model_ouputs/alpaca/medinstruct/seed_0.json": ("8a595311ab553fe6e43b2123d5e65c5a43ce8b36", "7a68fd7dadabed52700314deb6c8f401d63db7a9d238e53a8eea6a66c86a7998"),
        "data/model_ouputs/baize-h-7b/alpaca_eval/seed_0.json": ("1f861a565296a66be278c502220108f3922e8846", None),
        "data/model_ouputs/baize-h-7b/iCliniq/seed_0.json": ("00bdbcd6c32f5d6b25fdae903e0adb388071c867", "e50a84fd4da35a3d5b3ae81c61ee8794db9fab8c50cb25f48f77b47259734f2f"),
        "data/model_ouputs/baize-h-7b/medinstruct/seed_0.json": ("af5c29ad2501c6c77be08b8c7195393b2a606b2e", "951e27b2e45dbd7c6137a008d86ad41dc7ab78df948138f42c46bc21ee21d403"),
        "data/model_ouputs/medalpaca-13b/alpaca_eval/seed_0.json": ("fbd798cb628f79aada601f9461dd93faa12df622", "64f7c8e90553dc2789a8258a51eaa5200f622e63c62d64993836f3b82b10e4f6"),
        "data/model_ouputs/medalpaca-13b/iCliniq/seed_0.json": ("70b8d519140926f6740fd879419c6da224a1f61c", "9cc12a03f944c8b3dccfeabad2edc10105fae126cb052f0d2dd9fd9deda1fd7e"),
        "data/model_ouputs/medalpaca-13b/medinstruct/seed_0.json": ("c3b27692af80c6b69b47733d2ba419c90fc5fc91", "b83825d8bd0857888d42158d068159aa58311141cc3f502dd8fca224951d35cd"),
        "data/model_ouputs/medalpaca-7b/alpaca_eval/seed_0.json": ("9d2b1bd70e05804061fdd88c8d8ab3da25df81a0", "2dbfce6117cf37fc5d137c283144c6c940f21a1bb126e021718b70884cbb0cf9"),
        "data/model_ouputs/medalpaca-7b/iCliniq/seed_0.json": ("6e9fd3973aec4e60add1e0f68398b69347e2ff2a", None),
        "data/model_ouputs/medalpaca-7b/medinstruct/seed_0.json": ("54e0d180e12624fa85133c12b12c9ce82f443859", "a009193812aff199f14ce7823534a964c49975d5433f20f2499f7ce7e2eb9ea1"),
    },
    "alpaca_eval": {
        # outputs on the 805 AlpacaFarm evaluation instructions (each file holds the instructions too)
        "results/text_davinci_003/model_outputs.json": ("9b42638dd9c74a21adaaff9fed3de9f3f0f43ed2", "af0bc112f08c88bf589bbfe6fc1036806d0a0f6fec9c4d5a4db860f5afe73b4b"),
        "results/gpt4/model_outputs.json": ("ce631344dd1d44b8f389eb39d57a9e244594934d", "9c5149c146fadc99285f23abbaec2a62ba94ffa35c1dddacb70686571d9d780e"),
        "results/gpt4_0314/model_outputs.json": ("15e489dee0c5c0c0e87dcbc178b20929c632640b", "ad865ea6d90f91409ebded89a48aadd232c4c2c2d1fd08f194abca8102406b4a"),
        "results/claude-2/model_outputs.json": ("18018a98e187a2293fcf2fe48fcd867dee3711d9", "aaab6625ea5825776d7aa0510a1e60d8c8ae0c11f1059648dbd75bf0289f6b3f"),
        "results/claude/model_outputs.json": ("d796b85db2135c569fd911218507443f84819842", "e64dab2a6942eaaf369b51dd210f8482e5c56bb079530db4f2cfcee7251c13cc"),
        "results/gpt-3.5-turbo-0301/model_outputs.json": ("72f13bbf128719ca4ca93c34c9ab8fdb289c7d5a", "f290431eb3271dd221446103a9fa11ff767809f321f8cefc0367df68f56361bd"),
        "results/gpt-3.5-turbo-0613/model_outputs.json": ("d6cd8893c317825ec93b9b7f388bebf72dd15b71", "61c0770d28e22a39d65749783610bffd935d55765298a39c4f7a7a1a0b9d217f"),
    },
    "stanford_alpaca": {
        "alpaca_data.json": ("3779ddbc040543ab1834ef216c983d6fcc06cc9a", None),   # the 52,002 Alpaca examples
    },
}

# How many records (JSON list items or JSON lines) a pinned file holds, counted from the file itself
# (tests/test_published.py recounts the copies it has): what the README and the configs may state
# about them, and what a forecast may assume before downloading. By folder where every file in it
# holds the same rows (AlpaCare's released outputs per test set, alpaca_eval's per model).
TEST_ROWS = {"medinstruct": 216, "medsi": 216, "iCliniq": 1000, "alpaca_eval": 805}   # the paper's Table 1 says 217
ROWS = {
    "alpacare": {
        "data/MedInstruct-test.jsonl": TEST_ROWS["medsi"],
        "data/MedInstruct-52k.json": 52002,
        "data/med_seed.json": 167,
        # reference outputs <model>/<set>_output.jsonl, released outputs <model>/<set>/seed_0.json
        **{path: TEST_ROWS[path.split("/")[3].split("_")[0] if path.startswith("data/reference_outputs/") else path.split("/")[3]]
           for path in FILES["alpacare"] if path.startswith(("data/reference_outputs/", "data/model_ouputs/"))},
    },
    "alpaca_eval": {path: TEST_ROWS["alpaca_eval"] for path in FILES["alpaca_eval"]},
    "stanford_alpaca": {"alpaca_data.json": 52002},
}


def rows(ref: str) -> int | None:
    """The records a pinned file holds (ROWS), or None where they were not counted."""
    match = _REFERENCE.match(ref)
    return ROWS.get(match["source"], {}).get(match["path"]) if match else None


_REFERENCE = re.compile(r"^(?P<source>[a-z][a-z_]*):(?P<path>[^/].*)$")


class PublishedError(ValueError):
    pass


def script_string(ref: str, name: str, data: bytes) -> str:
    """The string a published script assigns to `name` (`system_prompt = "..."`): AlpaCare keeps
    its system prompts inside its scripts, not in its prompt files."""
    found = re.search(rf"""\b{re.escape(name)}\s*=\s*(["'])(.+?)\1""", data.decode("utf-8"))
    if not found:
        raise PublishedError(f"{ref}: assigns no string to {name}; the pinned script is not the one expected")
    return found.group(2)


@dataclass(frozen=True)
class Pin:
    """One published file: where it is and what its bytes must hash to."""
    ref: str
    url: str
    git_blob: str
    sha256: str | None

    def as_params(self) -> dict:
        """What decides a download's bytes, for a rule's params (a new pin reruns what used the file)."""
        return {"url": self.url, "git_blob": self.git_blob, "sha256": self.sha256}


def is_reference(where) -> bool:
    """`alpacare:data/...` names a published file; URLs (`https:`, `file:`) and paths do not."""
    match = _REFERENCE.match(str(where))
    return bool(match) and match["source"] in SOURCES


def resolve(ref: str) -> Pin:
    match = _REFERENCE.match(ref)
    if not match or match["source"] not in SOURCES:
        raise PublishedError(f"'{ref}' names no published file: use <source>:<path> with a source of "
                             f"{', '.join(SOURCES)}")
    source, path = match["source"], match["path"]
    if path not in FILES[source]:
        near = [p for p in FILES[source] if Path(p).name == Path(path).name or path.lower() in p.lower()][:5]
        hint = f"; pinned files of that name: {', '.join(near)}" if near else ""
        raise PublishedError(f"'{ref}': {SOURCES[source].repo} has no pinned file '{path}'{hint} "
                             f"(alpacare/published.py lists them)")
    git_blob, sha256 = FILES[source][path]
    return Pin(ref, SOURCES[source].url(path), git_blob, sha256)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check(data: bytes, pin: Pin) -> None:
    """Refuse bytes that are not the pinned file."""
    got = git_blob_id(data)
    if got != pin.git_blob:
        raise PublishedError(f"{pin.ref}: {pin.url} has git blob id {got} ({len(data):,} bytes), expected {pin.git_blob}: "
                             "the published file changed or the download was altered; refusing to use it")
    if pin.sha256 and hashlib.sha256(data).hexdigest() != pin.sha256:
        raise PublishedError(f"{pin.ref}: {pin.url} does not match its pinned SHA-256 {pin.sha256}; refusing to use it")


def mirrored(url: str) -> str:
    """`url` as fetched: through ALPACARE_MIRROR (<mirror>/<host>/<path>) when it is set."""
    mirror = os.environ.get("ALPACARE_MIRROR", "").rstrip("/")
    if not mirror or not re.match(r"^https?://", url):
        return url
    return f"{mirror}/{url.split('://', 1)[1]}"


def read_url(url: str, timeout: float = 120) -> bytes:
    fetched = mirrored(url)
    try:
        with urllib.request.urlopen(fetched, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as err:
        via = f" (through ALPACARE_MIRROR: {fetched})" if fetched != url else ""
        raise PublishedError(f"could not download {url}{via}: {getattr(err, 'reason', err)}. Public files are fetched "
                             "when a job needs them; offline, set ALPACARE_MIRROR to a copy laid out as "
                             "<mirror>/<host>/<path>") from None


def fetch_bytes(where: str, timeout: float = 120) -> bytes:
    """A published file (checked against its pin) or any URL's bytes."""
    if is_reference(where):
        pin = resolve(where)
        data = read_url(pin.url, timeout)
        check(data, pin)
        return data
    return read_url(where, timeout)


def fetch(where: str, path: str | Path, timeout: float = 120) -> None:
    """Download a published file or a URL to `path`, atomically; a published file only if it matches its pin."""
    data = fetch_bytes(where, timeout)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def url_of(where: str) -> str:
    """The address a reference or URL stands for, for messages and provenance."""
    return resolve(where).url if is_reference(where) else where


def params(where: str) -> dict:
    """A download's identity for a rule's params: a published file's pin, or the URL itself."""
    return resolve(where).as_params() if is_reference(where) else {"url": where}
