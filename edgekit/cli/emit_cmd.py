"""``edgekit emit FILE.tflite --target NAME``: the C array and TFLM project, without the build pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.errors import InputError


def emit(model: Path, target: str, out: Path | None, *, name: str = "model", allow_float: bool = False) -> dict:
    """Check, measure and emit ``model`` for ``target``; return what was written, with the memory estimate."""
    from edgekit import memory
    from edgekit.emit_tflm import check_identifier, emit_tflm_project
    from edgekit.model_check import read_model_file, size_limit
    from edgekit.outdir import check_out_dir
    from edgekit.targets import get_target
    from edgekit.tflite_model import read_model
    from edgekit.tflm_compat import ensure_tflm
    from edgekit.tflm_host import measure_arena

    check_identifier(name)
    prof = get_target(target)
    if not prof.is_mcu:
        raise InputError(f"target {prof.name} runs LiteRT, and emit writes microcontroller (TFLM) projects",
                         "pick a tflm target (edgekit targets), or use `edgekit build` for a Raspberry Pi")
    out = out if out is not None else Path(f"{model.stem}_tflm_{prof.name}")
    check_out_dir(out, [model])
    buf = read_model_file(model, size_limit(mcu=True))
    info = read_model(buf, name=str(model))
    ensure_tflm(info, allow_float=allow_float)
    if memory.arena_floor(info) > prof.ram_bytes:  # cannot fit: refused (exit 3) without probing TFLM for minutes
        memory.check_budget(memory.estimate(info, prof, None), prof)
    arena = measure_arena(buf)
    est = memory.estimate(info, prof, arena)
    memory.check_budget(est, prof)
    mem = {"memory": est.to_dict(), "ops": list(info.ops), "model": str(model), "target": prof.name}
    res = emit_tflm_project(buf, prof, out, arena=arena, name=name, allow_float=allow_float, source_name=model.name,
                            extra_files={"memory.json": json.dumps(mem, indent=2, sort_keys=True) + "\n"})
    res["memory"] = est.to_dict()
    return res


@click.command(name="emit")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="A microcontroller target (name or .toml path), e.g. cortex-m4.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default: MODEL_tflm_TARGET); replaced atomically, and only if edgekit wrote it.")
@click.option("--name", default="model", show_default=True, help="C name prefix: NAME_data.h/.cc, g_NAME_data.")
@click.option("--allow-float", is_flag=True, help="Emit a float model (TFLM runs it, at 4x the flash of int8).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def command(model: Path, target: str, out: Path | None, name: str, allow_float: bool, as_json: bool) -> None:
    """Write MODEL.tflite as a C array and a TensorFlow Lite Micro project for TARGET.

    Refuses models TFLM cannot run (exit 4) and models over the target's
    budget (exit 3). The project holds NAME_data.h/.cc (the exact bytes),
    main.cc (exact op resolver, measured arena + margin, one inference),
    Makefile, CMakeLists.txt, README.md, memory.json and an Arduino library.
    """
    res = emit(model, target, out, name=name, allow_float=allow_float)
    if as_json:
        click.echo(json.dumps(res, indent=2, sort_keys=True))
        return
    m = res["memory"]
    click.echo(f"Wrote {res['folder']}/ ({len(res['files'])} files) for {m['target']}")
    click.echo(f"  model array      {res['array']}: {res['model_bytes']:,} B")
    click.echo(f"  op resolver      MicroMutableOpResolver<{res['resolver_size']}>: {', '.join(res['ops'])}")
    click.echo(f"  tensor arena     {res['arena_bytes']:,} B (measured {res['arena_used_bytes']:,} B, minimum {res['arena_min_bytes']:,} B, + margin)")
    click.echo(f"  flash            {m['flash_bytes']:,} B of {m['flash_budget_bytes']:,} B")
    click.echo(f"  RAM              {m['ram_bytes']:,} B of {m['ram_budget_bytes']:,} B")
    if res["note"]:
        click.echo(f"  note             {res['note']}")
    click.echo(f"Build it: make -C {res['folder']} TFLM_DIR=/path/to/tflite-micro (see its README.md)")
