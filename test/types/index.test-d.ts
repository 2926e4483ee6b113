// The published types (dist/index.d.ts, dist/internal.d.ts) as a user's compiler sees them: run by
// `tsd` in `npm test`. Each expectError is a mistake the types must catch.
import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd';
import { adapters, losses, type models, type nn, optim, quant, torch } from 'vlalign';
import { native, pythonFloatRepr } from 'vlalign/internal';

// Tensors: creation, methods and dtypes keep their types.
const x = torch.randn([2, 3]);
expectType<torch.Tensor>(x);
expectType<torch.Tensor>(x.matmul(torch.ones([3, 4])).logSoftmax(-1));
expectType<number[]>(x.shape);
expectAssignable<torch.DType>(x.dtype);
expectError(torch.zeros([2], { dtype: 'float128' }));
expectError(x.add('one'));

// Users cannot build a tensor from a raw handle.
expectError(new torch.Tensor(1));

// Models hand the losses their LM head in the losses' type.
declare const model: models.CausalLM;
expectType<nn.LmHead>(model.lmHead());
expectAssignable<losses.LmHead>(model.lmHead());

// Loss configs are checked at compile time as well as by zod.
expectType<losses.PreferenceLoss>(new losses.PreferenceLoss({ ...losses.MPO, beta: 0.1 }));
expectError(new losses.PreferenceLoss({ lossType: ['sigmoid'], beta: '0.1' }));
expectError(new losses.PreferenceLoss({ betta: 0.1 })); // a misspelt key

// Adapters and optimisers.
expectAssignable<adapters.LoraConfigInput>({ r: 8, loraAlpha: 16, targetModules: 'all-linear' });
expectNotAssignable<adapters.LoraConfigInput>({ r: '8' });
expectType<typeof optim.AdamW>(optim.AdamW);
expectAssignable<quant.QuantizationOptions>({ quantType: 'nf4', doubleQuant: true });

// Internals are reachable only through vlalign/internal.
expectError(quant.pythonFloatRepr);
expectError(adapters.patternKey);
expectError(optim.checkOption);
expectType<string>(pythonFloatRepr(1.5));
expectAssignable<object>(native);
