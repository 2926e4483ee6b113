// Views and layout: view / reshape / permute / transpose / expand / repeat / flatten / squeeze,
// joining and splitting (cat, stack, split, chunk), triangular masks.
#include "binding.h"

namespace vlalign {
namespace {

#define VL_SHAPE_OP(fn, name, expr)                                                          \
  Napi::Value fn(const Info& info) {                                                         \
    return guard(info, name, [&] {                                                           \
      const at::Tensor& a = tensorAt(info, 0);                                               \
      return wrap(info.Env(), expr);                                                         \
    }, {0});                                                                                 \
  }

VL_SHAPE_OP(view, "view", a.view(intsAt(info, 1)))
VL_SHAPE_OP(reshape, "reshape", a.reshape(intsAt(info, 1)))
VL_SHAPE_OP(permute, "permute", a.permute(intsAt(info, 1)))
VL_SHAPE_OP(transpose, "transpose", a.transpose(intAt(info, 1), intAt(info, 2)))
VL_SHAPE_OP(expand, "expand", a.expand(intsAt(info, 1)))
VL_SHAPE_OP(repeat, "repeat", a.repeat(intsAt(info, 1)))
VL_SHAPE_OP(flatten, "flatten", a.flatten(intAt(info, 1), intAt(info, 2)))
VL_SHAPE_OP(unflatten, "unflatten", a.unflatten(intAt(info, 1), intsAt(info, 2)))
VL_SHAPE_OP(unsqueeze, "unsqueeze", a.unsqueeze(intAt(info, 1)))
VL_SHAPE_OP(flip, "flip", a.flip(intsAt(info, 1)))
VL_SHAPE_OP(roll, "roll", a.roll(intsAt(info, 1), intsAt(info, 2)))
VL_SHAPE_OP(movedim, "movedim", a.movedim(intsAt(info, 1), intsAt(info, 2)))
VL_SHAPE_OP(triu, "triu", a.triu(intAt(info, 1)))
VL_SHAPE_OP(tril, "tril", a.tril(intAt(info, 1)))
VL_SHAPE_OP(narrow, "narrow", a.narrow(intAt(info, 1), intAt(info, 2), intAt(info, 3)))
VL_SHAPE_OP(select, "select", a.select(intAt(info, 1), intAt(info, 2)))
VL_SHAPE_OP(repeatInterleave, "repeatInterleave", a.repeat_interleave(intAt(info, 1), optionalIntAt(info, 2)))

// squeeze(a, dim | null)
Napi::Value squeeze(const Info& info) {
  return guard(info, "squeeze", [&] {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dim = optionalIntAt(info, 1);
    return wrap(info.Env(), dim ? a.squeeze(*dim) : a.squeeze());
  });
}

// slice(a, dim, start | null, end | null, step)
Napi::Value slice(const Info& info) {
  return guard(info, "slice", [&] {
    return wrap(info.Env(), tensorAt(info, 0).slice(intAt(info, 1), optionalIntAt(info, 2), optionalIntAt(info, 3),
                                                    intAt(info, 4)));
  }, {0});
}

// The shapes of every input are named on failure (describeTensors expands arrays).
Napi::Value cat(const Info& info) {
  return guard(info, "cat", [&] { return wrap(info.Env(), at::cat(tensorsAt(info, 0), intAt(info, 1))); }, {0});
}

Napi::Value stack(const Info& info) {
  return guard(info, "stack", [&] { return wrap(info.Env(), at::stack(tensorsAt(info, 0), intAt(info, 1))); }, {0});
}

// split(a, size | sizes[], dim)
Napi::Value split(const Info& info) {
  return guard(info, "split", [&] {
    const at::Tensor& a = tensorAt(info, 0);
    const int64_t dim = intAt(info, 2);
    return wrapAll(info.Env(),
                   info[1].IsArray() ? a.split_with_sizes(intsAt(info, 1), dim) : a.split(intAt(info, 1), dim));
  }, {0});
}

Napi::Value chunk(const Info& info) {
  return guard(info, "chunk",
               [&] { return wrapAll(info.Env(), tensorAt(info, 0).chunk(intAt(info, 1), intAt(info, 2))); });
}

Napi::Value unbind(const Info& info) {
  return guard(info, "unbind", [&] { return wrapAll(info.Env(), tensorAt(info, 0).unbind(intAt(info, 1))); });
}

}  // namespace

void registerShapeOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "view", view);
  VL_EXPORT(exports, env, "reshape", reshape);
  VL_EXPORT(exports, env, "permute", permute);
  VL_EXPORT(exports, env, "transpose", transpose);
  VL_EXPORT(exports, env, "expand", expand);
  VL_EXPORT(exports, env, "repeat", repeat);
  VL_EXPORT(exports, env, "flatten", flatten);
  VL_EXPORT(exports, env, "unflatten", unflatten);
  VL_EXPORT(exports, env, "squeeze", squeeze);
  VL_EXPORT(exports, env, "unsqueeze", unsqueeze);
  VL_EXPORT(exports, env, "flip", flip);
  VL_EXPORT(exports, env, "roll", roll);
  VL_EXPORT(exports, env, "movedim", movedim);
  VL_EXPORT(exports, env, "triu", triu);
  VL_EXPORT(exports, env, "tril", tril);
  VL_EXPORT(exports, env, "narrow", narrow);
  VL_EXPORT(exports, env, "select", select);
  VL_EXPORT(exports, env, "slice", slice);
  VL_EXPORT(exports, env, "repeatInterleave", repeatInterleave);
  VL_EXPORT(exports, env, "cat", cat);
  VL_EXPORT(exports, env, "stack", stack);
  VL_EXPORT(exports, env, "split", split);
  VL_EXPORT(exports, env, "chunk", chunk);
  VL_EXPORT(exports, env, "unbind", unbind);
}

}  // namespace vlalign
